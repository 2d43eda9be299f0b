"""A fresh catalogue for a test: settings scrubbed to the hermetic defaults, then pointed at a
SQLite file and a state directory under ``tmp_path``, re-read so every command uses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from catalogue.store import Store
from schemas.settings import get_settings
from tests.support.hermetic import scrub_settings


@contextmanager
def fresh_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """The store of a catalogue of its own; local build sources may live under tmp_path."""
    # Settings from the developer's shell (clusters, ports, …) must not leak into the tests.
    scrub_settings(monkeypatch)
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    monkeypatch.setenv("SLIPWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", url)
    monkeypatch.setenv("SLIPWAY_USER", "tester")
    monkeypatch.setenv("SLIPWAY_SOURCE_ROOTS", json.dumps([str(tmp_path)]))
    get_settings.cache_clear()
    catalogue = Store(url)
    try:
        yield catalogue
    finally:
        catalogue.engine.dispose()
        get_settings.cache_clear()
