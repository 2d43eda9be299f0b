"""Tables that fit the terminal they are printed on, without splitting words.

Each column says what it holds, and so how it may give up width:

* ``fixed``: ids, names, times, states, what people read at a glance or copy into the next
  command. Never wraps.
* ``wrap``: short phrases (``v3 → v4``, ``bob / alice``). Wraps between words, never inside one.
* ``text``: free text (why, note, reason). Wraps between words. When the screen would leave it
  narrower than its longest word, than ``MIN_TEXT`` columns, or so narrow that a cell takes
  more than ``MAX_LINES["text"]`` lines, it moves below the table as numbered notes.
* ``fold``: one long word such as an image ref with its digest, or a URL. Folds (it may be
  wider than the screen), and moves below the table as ``text`` does.

The widths are decided each time the table is rendered, from the width it is given, so
``status --watch`` fits again after the terminal is resized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

Kind = Literal["fixed", "wrap", "text", "fold"]
MOVABLE: tuple[Kind, ...] = ("text", "fold")
MIN_TEXT = 24
MAX_LINES: dict[Kind, int] = {"text": 4, "fold": 3}
_UNBOUNDED = 10_000


@dataclass
class _Column:
    header: str
    kind: Kind
    justify: JustifyMethod
    cells: list[RenderableType]


class FitTable:
    """A rich table whose columns get their widths by kind; see the module's docstring.

    ``notes_at`` names the column whose cells carry the note markers (``failed [1]``) when
    columns move below the table; without it a narrow column of markers takes the place of
    the first column moved.
    """

    def __init__(self, title: str | None = None, *, title_justify: JustifyMethod = "center",
                 notes_at: str | None = None) -> None:
        self.title = title
        self.title_justify = title_justify
        self.notes_at = notes_at
        self.columns: list[_Column] = []

    def add_column(self, header: str, kind: Kind = "fixed", *,
                   justify: JustifyMethod = "left") -> None:
        self.columns.append(_Column(header, kind, justify, []))

    def add_row(self, *cells: RenderableType) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        for column, cell in zip(self.columns, cells, strict=True):
            # Free text is data, not markup: a reason "[prod] outage" stays as written.
            if isinstance(cell, str) and column.kind in MOVABLE:
                cell = Text(cell)
            column.cells.append(cell)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        movable = sorted((column for column in self.columns if column.kind in MOVABLE),
                         key=lambda column: _natural(console, column), reverse=True)
        moved: list[_Column] = []
        ranges: dict[int, tuple[int, int]] = {}  # by id(column): measured once a render
        while True:
            shown, notes = self._view(moved)
            widths = _widths(console, options.max_width, shown, ranges)
            if widths is not None or not movable:
                break
            moved.append(movable.pop(0))
        if widths is None:
            # Even the short columns do not fit: let them wrap too, and fold as the last resort.
            shown = [_Column(c.header, "wrap" if c.kind == "fixed" else c.kind, c.justify,
                             c.cells) for c in shown]
            widths = _widths(console, options.max_width, shown, {})
        yield self._table(shown, widths)
        if notes:
            grid = Table.grid(padding=(0, 1))
            grid.add_column(no_wrap=True)
            grid.add_column(overflow="fold")
            for marker, note in notes:
                grid.add_row(marker, note)
            yield grid

    def _view(self, moved: list[_Column]) -> tuple[list[_Column], list[tuple[str, RenderableType]]]:
        """The columns left in the table, and the notes that hold the ones moved."""
        if not moved:
            return self.columns, []
        moved = [column for column in self.columns if column in moved]  # the table's order
        markers: list[str] = []
        notes: list[tuple[str, RenderableType]] = []
        for row in range(len(self.columns[0].cells)):
            parts = [(column.header, column.cells[row]) for column in moved
                     if not _blank(column.cells[row])]
            markers.append(f"[{len(notes) + 1}]" if parts else "")
            if parts:
                notes.append((markers[-1], _note(parts, labelled=len(moved) > 1)))
        shown: list[_Column] = []
        for column in self.columns:
            if column.header == self.notes_at:
                shown.append(_Column(column.header, "wrap" if column.kind == "fixed" else
                                     column.kind, column.justify,
                                     [_marked(cell, marker)
                                      for cell, marker in zip(column.cells, markers,
                                                              strict=True)]))
            elif column is moved[0] and self.notes_at is None:
                header = " / ".join(item.header for item in moved)
                shown.append(_Column(header, "wrap", "left", list(markers)))
            elif column not in moved:
                shown.append(column)
        return shown, notes

    def _table(self, shown: list[_Column], widths: list[int] | None) -> Table:
        table = Table(title=self.title, title_justify=self.title_justify)
        for index, column in enumerate(shown):
            fixed = column.kind == "fixed"
            table.add_column(column.header, justify=column.justify, no_wrap=fixed,
                             overflow="ellipsis" if fixed else "fold",
                             width=None if widths is None else widths[index])
        for row in zip(*(column.cells for column in shown), strict=True):
            table.add_row(*row)
        return table


def _widths(console: Console, max_width: int, shown: list[_Column],
            known: dict[int, tuple[int, int]]) -> list[int] | None:
    """Each column's content width, or None when even their narrowest do not fit.

    Past each column's narrowest, a folding column gets its whole width first if it can.
    Then the widest columns give up width first, so short columns keep theirs and the long
    ones share what is left: the wrapping columns are capped at one level, raised as far as
    the room allows.
    """
    for column in shown:
        if id(column) not in known:
            known[id(column)] = _range(console, column)
    ranges = [known[id(column)] for column in shown]
    # Boxed, padded by one on each side: three characters per column and one more border.
    room = max_width - (3 * len(shown) + 1)
    spare = room - sum(least for least, _ in ranges)
    if spare < 0:
        return None
    # A fold cuts a word: a long ref gets its whole width first, when the room allows.
    for index, column in enumerate(shown):
        least, top = ranges[index]
        if column.kind == "fold" and least < top <= least + spare:
            ranges[index], spare = (top, top), spare - (top - least)
    low, high = 0, max((top for _, top in ranges), default=0)
    while low < high:
        level = (low + high + 1) // 2
        if sum(max(least, min(top, level)) for least, top in ranges) <= room:
            low = level
        else:
            high = level - 1
    return [max(least, min(top, low)) for least, top in ranges]


def _range(console: Console, column: _Column) -> tuple[int, int]:
    """The narrowest width the column accepts, and the width it would like."""
    sizes = _sizes(console, column)
    natural = max(size.maximum for size in sizes)
    if column.kind == "fixed":
        return natural, natural
    longest_word = max(size.minimum for size in sizes)
    if column.kind == "wrap":
        return longest_word, natural
    floor = max(MIN_TEXT, longest_word) if column.kind == "text" else MIN_TEXT
    texts = [cell for cell in column.cells if isinstance(cell, Text)]

    def too_tall(width: int) -> bool:
        return any(len(text.wrap(console, width, overflow="fold")) > MAX_LINES[column.kind]
                   for text in texts)

    # The narrowest width from the floor up at which no cell is too tall.
    low, high = min(floor, natural), natural
    while low < high:
        middle = (low + high) // 2
        if too_tall(middle):
            low = middle + 1
        else:
            high = middle
    return low, natural


def _natural(console: Console, column: _Column) -> int:
    return max(size.maximum for size in _sizes(console, column))


def _sizes(console: Console, column: _Column) -> list[Measurement]:
    options = console.options.update_width(_UNBOUNDED)
    return [Measurement.get(console, options, cell) for cell in [column.header, *column.cells]]


def _blank(cell: RenderableType) -> bool:
    if isinstance(cell, Text):
        cell = cell.plain
    return isinstance(cell, str) and cell.strip() in ("", "-")


def _note(parts: list[tuple[str, RenderableType]], labelled: bool) -> RenderableType:
    """One column moved: its cell as it is; several: each on a line of its own, named."""
    if not labelled:
        return parts[0][1]
    return Group(*(Text.assemble((f"{header}: ", "bold"), value)
                   if isinstance(value, str | Text) else Group(Text(f"{header}:", "bold"), value)
                   for header, value in parts))


def _marked(cell: RenderableType, marker: str) -> RenderableType:
    if not marker:
        return cell
    if isinstance(cell, str):
        return f"{cell} {marker}"
    if isinstance(cell, Text):
        return Text.assemble(cell, f" {marker}")
    return Group(cell, marker)
