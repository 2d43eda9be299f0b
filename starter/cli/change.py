"""``slipway change …`` and ``slipway baseline …``: changes (变更单) and baselines (基线).

Thin typer + rich layer: parsing and printing only; the rules live in
:mod:`starter.service.changes`.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from catalogue.tables import Change
from schemas.enums import ChangeKind, ChangeState
from starter.cli.console import command_store, console
from starter.cli.fit import FitTable
from starter.service import changes
from starter.service.identity import current_user

change_cli = typer.Typer(no_args_is_help=True,
                         help="Create, submit and close changes (what a release carries out).")
baseline_cli = typer.Typer(no_args_is_help=True,
                           help="List and compare an environment's baselines.")

AppArg = Annotated[str, typer.Argument(metavar="APP", help="Application.", show_default=False)]
EnvArg = Annotated[str, typer.Argument(metavar="ENV", show_default=False,
                                       help="Environment: type@cluster, or type alone.")]
ChangeId = Annotated[int, typer.Argument(metavar="ID", help="Change id (see `change list`).",
                                         show_default=False)]


def _what(change: Change) -> str:
    """What a change does, in a few words."""
    if change.kind == ChangeKind.SCALE:
        return f"replicas → {change.replicas}"
    if change.kind == ChangeKind.RESOURCES:
        return " ".join(f"{name} → {value}" for name, value in
                        (("cpu", change.cpu), ("memory", change.memory)) if value)
    return change.image or (f"build at {change.ref}" if change.ref else "build from source")


# ---------------------------------------------------------------- slipway change …


@change_cli.command("create")
def change_create(
    app: AppArg, env: EnvArg,
    kind: Annotated[str, typer.Option(
        metavar="code|scale|resources",
        help="code: a new image or build; scale: replicas; resources: cpu/memory.")] = "code",
    image: Annotated[str | None, typer.Option(
        metavar="REF", show_default=False, help="code: release this existing image.")] = None,
    ref: Annotated[str | None, typer.Option(
        show_default=False, help="code: build this git ref of the app's source. Without "
                                 "--image or --ref the source is built as it is.")] = None,
    replicas: Annotated[int | None, typer.Option(
        show_default=False, help="scale: the new number of instances, 1 to 24.")] = None,
    cpu: Annotated[str | None, typer.Option(
        show_default=False, help="resources: CPU limit per instance, like 0.5 or 500m.")] = None,
    memory: Annotated[str | None, typer.Option(
        show_default=False, help="resources: memory limit per instance, like 256Mi.")] = None,
    note: Annotated[str, typer.Option(help="What and why, in one line.",
                                      show_default=False)] = "",
) -> None:
    """Create a change of APP on ENV. It starts developing; `change submit` makes it
    ready to release."""
    with command_store() as store:
        view = changes.create_change(store, app, env, kind=kind, image=image, ref=ref,
                                     replicas=replicas, cpu=cpu, memory=memory, note=note,
                                     actor=current_user())
    console.print(f"created change [bold]{view.change.id}[/] ({view.change.kind}: "
                  f"{_what(view.change)}) for {view.app} {view.env}, {view.change.state}",
                  highlight=False)
    console.print(f"when it is ready: slipway change submit {view.change.id}", highlight=False)


@change_cli.command("list")
def change_list(app: AppArg) -> None:
    """List an application's changes, newest first (`change show ID` for details)."""
    with command_store() as store:
        views = changes.list_changes(store, app)
    if not views:
        console.print(f"{app} has no changes: slipway change create {app} ENV", highlight=False)
        return
    table = FitTable()
    # Ids and names are what people copy into the next command: never cut them short.
    for header in ("id", "env", "kind", "state"):
        table.add_column(header)
    table.add_column("what", "fold")  # an image ref, or a few words
    for header in ("by", "release"):
        table.add_column(header, "wrap")
    for view in views:
        release = f"{view.release.id} ({view.release.state})" if view.release else "-"
        table.add_row(str(view.change.id), view.env, view.change.kind, view.change.state,
                      _what(view.change), view.change.requested_by or "-", release)
    console.print(table)


@change_cli.command("show")
def change_show(change_id: ChangeId) -> None:
    """Show one change: what it does, its state and the release that carried it out."""
    with command_store() as store:
        view = changes.show_change(store, change_id)
    change = view.change
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")  # an image ref wider than the screen folds
    release = (f"{view.release.id} ({view.release.state}, workflow {view.release.workflow_id})"
               if view.release else "-")
    for label, value in (("change", str(change.id)), ("app", view.app), ("env", view.env),
                         ("kind", change.kind), ("what", _what(change)),
                         ("state", change.state), ("requested by", change.requested_by or "-"),
                         ("note", change.note or "-"), ("release", release),
                         ("rolled back", f"{change.rollback_count}×"),
                         ("created", change.created_at.strftime("%Y-%m-%d %H:%M:%S"))):
        grid.add_row(label, value)
    console.print(grid)
    if change.state == ChangeState.READY_TO_RELEASE:
        console.print(f"release it: slipway release {view.app} {view.env} --change {change.id}",
                      highlight=False)


@change_cli.command("submit")
def change_submit(change_id: ChangeId) -> None:
    """Mark a change done: developing → ready_to_release."""
    with command_store() as store:
        view = changes.submit_change(store, change_id, current_user())
    console.print(f"change {change_id}: {ChangeState.DEVELOPING} → {view.change.state}",
                  highlight=False)
    console.print(f"release it: slipway release {view.app} {view.env} --change {change_id}",
                  highlight=False)


@change_cli.command("close")
def change_close(change_id: ChangeId) -> None:
    """Abandon a change never released: developing or ready_to_release → closed."""
    with command_store() as store:
        before = changes.show_change(store, change_id).change.state
        view = changes.close_change(store, change_id, current_user())
    console.print(f"change {change_id}: {before} → {view.change.state}", highlight=False)


# ---------------------------------------------------------------- slipway baseline …


@baseline_cli.command("list")
def baseline_list(app: AppArg, env: EnvArg) -> None:
    """List the baselines of APP on ENV, newest first (the first row runs now)."""
    with command_store() as store:
        baselines = changes.list_baselines(store, app, env)
    if not baselines:
        console.print(f"no baselines yet: nothing has been released to {app} {env}",
                      highlight=False)
        return
    table = FitTable(notes_at="version")
    table.add_column("version", "wrap")
    table.add_column("image", "fold")
    for header in ("digest", "replicas", "cpu", "memory"):
        table.add_column(header)
    table.add_column("created", "wrap")
    for index, baseline in enumerate(baselines):
        version = f"v{baseline.version}" + (" (current)" if index == 0 else "")
        if baseline.rolled_back_from is not None:
            version += f"\nrollback from v{baseline.rolled_back_from}"
        # 12 hex digits identify an image as well as `docker images` does.
        table.add_row(version, baseline.image, baseline.digest.removeprefix("sha256:")[:12] or "-",
                      str(baseline.replicas), baseline.cpu or "-", baseline.memory or "-",
                      baseline.created_at.strftime("%m-%d %H:%M"))
    console.print(table)


@baseline_cli.command("diff")
def baseline_diff(
    app: AppArg, env: EnvArg,
    a: Annotated[int | None, typer.Argument(
        metavar="[A]", show_default=False,
        help="Older version. Default: the one before the current.")] = None,
    b: Annotated[int | None, typer.Argument(
        metavar="[B]", show_default=False, help="Newer version. Default: the current.")] = None,
) -> None:
    """Show what differs between two baselines of APP on ENV (image, digest, resources)."""
    with command_store() as store:
        diff = changes.diff_baselines(store, app, env, a, b)
        old, new = changes.diff_versions(store, app, env, a, b)
    if not diff:
        console.print(f"v{old} and v{new} are the same", highlight=False)
        return
    table = FitTable()
    table.add_column("field")
    for header in (f"v{old}", f"v{new}"):
        table.add_column(header, "fold")  # images and digests
    for name, before, after in diff:
        table.add_row(name, before or "-", after or "-")
    console.print(table)
