"""Where the router records each environment's load balancer: the file store (the default),
and any other store (here one in memory) taking over from it without losing a server."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from integrations.haproxy.intent import FileIntent, FrontendIntent, IntentStore, ServerIntent
from integrations.haproxy.process import HaproxyProcesses

KEY = "shop-prod-local"
A = ServerIntent(address="127.0.0.1", port=32001, weight=40)
B = ServerIntent(address="10.0.0.7", port=32002, state="drain")


class MemoryIntent:
    """An ``IntentStore`` in a dict, as the catalogue's would be."""

    def __init__(self) -> None:
        self.servers: dict[str, dict[str, ServerIntent]] = {}
        self.frontends: dict[str, FrontendIntent] = {}

    def read(self, key: str) -> dict[str, ServerIntent]:
        return dict(self.servers.get(key, {}))

    def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
        self.servers[key] = dict(servers)

    def keys(self) -> list[str]:
        return sorted({*self.servers, *self.frontends})

    def frontend(self, key: str) -> FrontendIntent | None:
        return self.frontends.get(key)

    def set_frontend(self, key: str, frontend: FrontendIntent) -> None:
        self.frontends[key] = frontend

    def forget(self, key: str) -> None:
        self.servers.pop(key, None)
        self.frontends.pop(key, None)


def test_both_stores_are_intent_stores(tmp_path: Path) -> None:
    stores: list[IntentStore] = [FileIntent(tmp_path), MemoryIntent()]
    for store in stores:
        store.write(KEY, {"a": A, "b": B})
        assert store.read(KEY) == {"a": A, "b": B}
        assert store.keys() == [KEY]
        store.write(KEY, {"b": B})  # replaces, never merges
        assert store.read(KEY) == {"b": B}
        store.forget(KEY)
        assert (store.read(KEY), store.keys()) == ({}, [])


def test_the_file_store_is_one_json_file_per_key_and_no_frontend(tmp_path: Path) -> None:
    store = FileIntent(tmp_path / "haproxy")
    assert store.keys() == [] and store.read(KEY) == {}  # no directory yet
    store.write(KEY, {"a": A})
    store.write("other-env", {})
    assert store.path(KEY) == tmp_path / "haproxy" / f"{KEY}.servers.json"
    assert store.keys() == ["other-env", KEY]
    store.set_frontend(KEY, FrontendIntent(bind_port=28081))
    assert store.frontend(KEY) is None  # the config beside it is the frontend's record
    store.path(KEY).write_text("{not json")
    assert store.read(KEY) == {}


def test_the_file_store_stays_the_default(tmp_path: Path) -> None:
    processes = HaproxyProcesses(tmp_path / "state")
    assert isinstance(processes.intent, FileIntent)
    assert processes.intent.path(KEY) == processes.intent_path(KEY)


def _host_with_a_file_record(state: Path) -> HaproxyProcesses:
    """A key as a host on the file store left it: a config and its .servers.json."""
    local = HaproxyProcesses(state)
    local.dir.mkdir(parents=True)
    local.intent.write(KEY, {"a": A, "b": B})
    local.config_path(KEY).write_text(local.render_config(KEY, 28081, "/healthz",
                                                          local.intended(KEY)))
    return local


def test_another_store_adopts_what_the_file_store_recorded(tmp_path: Path) -> None:
    """A host switched to another store (the catalogue's) keeps its servers: its config and
    .servers.json go into the store before anything rewrites the config from it."""
    local = _host_with_a_file_record(tmp_path / "state")
    config = local.config_path(KEY).read_text()
    store = MemoryIntent()
    processes = HaproxyProcesses(tmp_path / "state", intent=store)
    assert processes.known_keys() == [KEY]
    assert not processes.sync_config(KEY)  # nothing to rewrite: the record came along
    assert store.read(KEY) == {"a": A, "b": B}
    assert store.frontend(KEY) == FrontendIntent(bind_port=28081, health_path="/healthz")
    assert processes.config_path(KEY).read_text() == config


def test_a_store_that_already_knows_the_key_is_not_overwritten(tmp_path: Path) -> None:
    _host_with_a_file_record(tmp_path / "state")
    store = MemoryIntent()
    store.set_frontend(KEY, FrontendIntent(bind_port=28081, health_path="/healthz"))
    store.write(KEY, {"a": A})
    processes = HaproxyProcesses(tmp_path / "state", intent=store)
    assert processes.sync_config(KEY)  # the store is the record: the config follows it
    assert store.read(KEY) == {"a": A}
    assert "server b " not in processes.config_path(KEY).read_text()


def test_known_keys_are_the_configs_here_and_the_stores(tmp_path: Path) -> None:
    _host_with_a_file_record(tmp_path / "state")
    store = MemoryIntent()
    store.set_frontend("cart-prod-local", FrontendIntent(bind_port=28082))
    processes = HaproxyProcesses(tmp_path / "state", intent=store)
    assert processes.known_keys() == ["cart-prod-local", KEY]
    assert processes.local_keys() == [KEY]


def test_a_stopped_key_is_forgotten_by_its_store(tmp_path: Path) -> None:
    _host_with_a_file_record(tmp_path / "state")
    store = MemoryIntent()
    processes = HaproxyProcesses(tmp_path / "state", intent=store)
    processes.stop(KEY)
    assert store.keys() == [] and processes.known_keys() == []
    assert not processes.intent_path(KEY).exists()  # the old file goes too


def test_a_store_that_cannot_be_asked_fails_what_needs_it(tmp_path: Path) -> None:
    class Down(MemoryIntent):
        def frontend(self, key: str) -> FrontendIntent | None:
            raise ConnectionError("catalogue down")

        def read(self, key: str) -> dict[str, ServerIntent]:
            raise ConnectionError("catalogue down")

    _host_with_a_file_record(tmp_path / "state")
    processes = HaproxyProcesses(tmp_path / "state", intent=Down())
    with pytest.raises(ConnectionError):
        processes.sync_config(KEY)  # the lock is taken (adoption waits), the read fails
    assert "server a " in processes.config_path(KEY).read_text()  # untouched
