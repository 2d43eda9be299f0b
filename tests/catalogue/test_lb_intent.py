"""The load balancers' intent in the catalogue (migration 0014): the router's IntentStore that
any host with the same catalogue rebuilds its HAProxy daemons from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from catalogue.lb_intent import CatalogueIntent
from catalogue.store import Store
from integrations.haproxy.intent import IntentStore
from schemas.lb_intent import FrontendIntent, ServerIntent
from tests.catalogue.test_migrations import upgrade_to

KEY = "shop-prod-local"
A = ServerIntent(address="127.0.0.1", port=32001, weight=40)
B = ServerIntent(address="10.0.0.7", port=32002, state="drain")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    yield store
    store.engine.dispose()


def test_servers_are_replaced_per_key(store: Store) -> None:
    intent: IntentStore = CatalogueIntent(store)
    assert intent.read(KEY) == {} and intent.keys() == []
    intent.write(KEY, {"v1-0": A, "v1-1": B})
    intent.write("cart-prod-local", {"v1-0": A})
    assert intent.read(KEY) == {"v1-0": A, "v1-1": B}
    intent.write(KEY, {"v2-0": B})  # replaces, never merges
    assert intent.read(KEY) == {"v2-0": B}
    assert intent.read("cart-prod-local") == {"v1-0": A}  # other keys untouched
    intent.write(KEY, {})
    assert intent.read(KEY) == {} and intent.keys() == ["cart-prod-local"]


def test_a_write_that_fails_half_way_leaves_the_previous_servers(store: Store) -> None:
    intent = CatalogueIntent(store)
    intent.write(KEY, {"v1-0": A, "v1-1": B})

    class Broken(dict[str, ServerIntent]):
        def items(self) -> Iterator[tuple[str, ServerIntent]]:  # type: ignore[override]
            yield "v2-0", A
            raise RuntimeError("the worker died mid-write")

    with pytest.raises(RuntimeError):
        intent.write(KEY, Broken())
    assert intent.read(KEY) == {"v1-0": A, "v1-1": B}  # one transaction: old rows stay


def test_a_frontend_is_a_key_with_or_without_servers(store: Store) -> None:
    intent = CatalogueIntent(store)
    assert intent.frontend(KEY) is None
    intent.set_frontend(KEY, FrontendIntent(bind_port=28081, health_path=None))
    assert intent.frontend(KEY) == FrontendIntent(bind_port=28081, health_path=None)
    intent.set_frontend(KEY, FrontendIntent(bind_port=28082))
    assert intent.frontend(KEY) == FrontendIntent(bind_port=28082, health_path="/healthz")
    intent.write("cart-prod-local", {"v1-0": A})
    assert intent.keys() == ["cart-prod-local", KEY]


def test_forget_drops_frontend_and_servers_of_one_key(store: Store) -> None:
    intent = CatalogueIntent(store)
    for key in (KEY, "cart-prod-local"):
        intent.set_frontend(key, FrontendIntent(bind_port=28081))
        intent.write(key, {"v1-0": A})
    intent.forget(KEY)
    intent.forget(KEY)  # already gone is fine
    assert intent.keys() == ["cart-prod-local"]
    assert (intent.read(KEY), intent.frontend(KEY)) == ({}, None)


def test_two_handles_on_one_catalogue_see_the_same_intent(tmp_path: Path) -> None:
    """What a replacement load-balancer host relies on: another process, same catalogue."""
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    first, second = Store(url), Store(url)
    try:
        CatalogueIntent(first).set_frontend(KEY, FrontendIntent(bind_port=28081))
        CatalogueIntent(first).write(KEY, {"v1-0": A, "v1-1": B})
        assert CatalogueIntent(second).keys() == [KEY]
        assert CatalogueIntent(second).read(KEY) == {"v1-0": A, "v1-1": B}
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_0014_adds_the_tables_to_a_catalogue_in_use(store: Store) -> None:
    upgrade_to(store, "0013_host_agents")
    assert "lb_frontend" not in inspect(store.engine).get_table_names()
    store.migrate()  # what every Slipway process does first
    tables = inspect(store.engine).get_table_names()
    assert {"lb_frontend", "lb_server_intent"} <= set(tables)
    CatalogueIntent(store).write(KEY, {"v1-0": A})
    assert CatalogueIntent(store).read(KEY) == {"v1-0": A}
