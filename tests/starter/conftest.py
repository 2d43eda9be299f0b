"""Fixtures of the CLI tests: a fresh catalogue per test, and one with a few entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.store import Store
from tests.support.catalogue import fresh_catalogue
from tests.support.cli import ok


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh catalogue in tmp_path; settings re-read so every command uses it."""
    with fresh_catalogue(tmp_path, monkeypatch) as catalogue:
        yield catalogue



@pytest.fixture
def populated(store: Store) -> Store:
    """shop (ready) with prod@local; gone (offline)."""
    ok("app register shop --ready")
    ok("env add shop prod")
    ok("app register gone")
    ok("app retire gone")
    return store
