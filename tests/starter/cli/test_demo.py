"""The demo's catalogue entries: registered once, and pointed at this checkout's sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import Application
from schemas.settings import CHECKOUT, get_settings
from starter.cli.demo import DEMO_APP, SAMPLE_SOURCE, ensure_catalogue


@pytest.fixture
def demo_store(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SLIPWAY_SOURCE_ROOTS", json.dumps([str(CHECKOUT), str(tmp_path)]))
    get_settings.cache_clear()
    return store


def source_of(store: Store) -> str:
    with store.session() as session:
        app = session.exec(select(Application).where(Application.name == DEMO_APP)).one()
        return app.source


def test_a_second_run_reuses_the_environment(demo_store: Store) -> None:
    first = ensure_catalogue(demo_store, get_settings())
    again = ensure_catalogue(demo_store, get_settings())
    assert (again.id, again.name, again.analysis) == (first.id, first.name, first.analysis)
    assert source_of(demo_store) == str(SAMPLE_SOURCE)


def test_a_demo_left_by_another_checkout_builds_this_one(demo_store: Store,
                                                          tmp_path: Path) -> None:
    ensure_catalogue(demo_store, get_settings())
    elsewhere = tmp_path / "other-checkout" / "examples" / "sample-app"
    elsewhere.mkdir(parents=True)
    with demo_store.session() as session:
        app = session.exec(select(Application).where(Application.name == DEMO_APP)).one()
        app.source = str(elsewhere)
        session.add(app)
        session.commit()
    ensure_catalogue(demo_store, get_settings())
    assert source_of(demo_store) == str(SAMPLE_SOURCE)
