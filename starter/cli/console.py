"""Shared terminal plumbing for the CLI: consoles, the one-line error exit, the store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from catalogue.store import CatalogueError, Store
from schemas.settings import get_settings
from starter.service.identity import current_session, session_token

console = Console()
err_console = Console(stderr=True)


def fit_consoles(columns: int, terminal: bool) -> None:
    """Render for the terminal of the client a server-run command prints to: its width, and
    colours and live views only when it is a terminal. Commands import these two objects,
    so they are set up again in place rather than replaced."""
    for each, stderr in ((console, False), (err_console, True)):
        each.__init__(stderr=stderr, width=columns, force_terminal=terminal,  # type: ignore[misc]
                      color_system="standard" if terminal else None)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line, actionable error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def read_token() -> str:
    """The acting user's API token: the one that authenticated this command at the server
    (else $SLIPWAY_TOKEN, for the operator's own processes); may be empty."""
    return session_token()


def uploaded(path: Path) -> Path:
    """``path`` when this command may read it: in a server-run command only a file the
    caller uploaded with it (the client sends the files it names), never one of the
    server's own."""
    session = current_session()
    if session is not None and (not session.uploads
                                or not path.resolve().is_relative_to(session.uploads)):
        fail(f"{path}: the server reads only files sent with the command; name a file on "
             "your machine (the slipway client uploads it)")
    return path


def open_store() -> Store:
    return Store(get_settings().resolved_database_url())


@contextmanager
def catalogue_errors() -> Iterator[None]:
    """Turn a CatalogueError raised inside a command into the one-line error exit."""
    try:
        yield
    except CatalogueError as error:
        fail(str(error))


@contextmanager
def command_store() -> Iterator[Store]:
    """The catalogue store for one command, with CatalogueError as the one-line error exit."""
    with catalogue_errors():
        store = open_store()
        try:
            yield store
        finally:
            store.engine.dispose()
