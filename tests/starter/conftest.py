"""Fixtures of the CLI tests: a fresh catalogue per test, and one with a few entries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalogue.store import Store
from schemas.settings import get_settings
from tests.support.cli import ok
from tests.support.hermetic import scrub_settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh catalogue in tmp_path; settings re-read so every command uses it."""
    # Settings from the developer's shell (clusters, ports, …) must not leak into the tests.
    scrub_settings(monkeypatch)
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    monkeypatch.setenv("SLIPWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", url)
    monkeypatch.setenv("SLIPWAY_USER", "tester")
    # Local build sources the tests register live under tmp_path.
    monkeypatch.setenv("SLIPWAY_SOURCE_ROOTS", json.dumps([str(tmp_path)]))
    get_settings.cache_clear()
    catalogue = Store(url)
    yield catalogue
    catalogue.engine.dispose()
    get_settings.cache_clear()



@pytest.fixture
def populated(store: Store) -> Store:
    """shop (ready) with prod@local; gone (offline)."""
    ok("app register shop --ready")
    ok("env add shop prod")
    ok("app register gone")
    ok("app retire gone")
    return store
