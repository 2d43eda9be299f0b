"""Shared terminal plumbing for the CLI: consoles, the one-line error exit, the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console

from catalogue.store import CatalogueError, Store
from schemas.settings import get_settings

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line, actionable error and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def read_token(token_file: Path | None) -> str:
    """The acting user's API token: the file's content, else $SLIPWAY_TOKEN (may be empty)."""
    if token_file is not None:
        return token_file.read_text().strip()
    return os.environ.get("SLIPWAY_TOKEN", "").strip()


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
