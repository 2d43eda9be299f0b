"""The reconciler on a fleet's load-balancer host: no runtime to ask (the replicas run on
other hosts' engines), the catalogue as the intent store. A replacement host, its state
directory fresh, rebuilds every load balancer from the catalogue, with its servers.

Real Debian haproxy, loopback HTTP backends standing in for replicas, a SQLite catalogue;
the Docker side of the reconciler is tests/integration/test_lb_reconcile.py.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from catalogue.lb_intent import CatalogueIntent
from catalogue.store import Store
from integrations.haproxy.intent import ServerIntent
from integrations.haproxy.router import HaproxyRouter
from integrations.lb_reconcile import LoadBalancerReconciler
from tests.integrations.haproxy.test_router import Backend, backends
from tests.support.hermetic import lb_port_start
from tests.support.load_spans import wait_exited

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy"),
]
__all__ = ["backends"]  # fixture shared with the router tests

KEY = "shop-prod-fleet"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    yield store
    store.engine.dispose()


@pytest.fixture
def hosts(tmp_path: Path, store: Store) -> Iterator[list[HaproxyRouter]]:
    """Routers of load-balancer hosts sharing the catalogue, each its own state directory;
    ``hosts.append(...)`` more, all stopped at the end."""
    made = [HaproxyRouter(tmp_path / "lb-1", intent=CatalogueIntent(store))]
    yield made
    for router in made:
        for config in router.dir.glob("*.cfg"):
            router._kill(config.stem)  # its daemon only: the record may matter to the next


def state(router: HaproxyRouter) -> dict[str, tuple[int, int, str]]:
    return {s.name: (s.port, s.weight, s.admin_state) for s in router.servers(KEY)}


def serve(router: HaproxyRouter, backends: dict[str, Backend]) -> str:
    """KEY on ``router``'s host: a (weight 100), b (weight 50), c draining."""
    port = lb_port_start(span=1)
    router.ensure_frontend(KEY, port, health_path=None)
    router.add_servers(KEY, {"a": ("127.0.0.1", backends["a"].port),
                             "c": ("127.0.0.1", backends["c"].port)})
    router.add_server(KEY, "b", "127.0.0.1", backends["b"].port, weight=50)
    router.drain(KEY, "c")
    return f"http://127.0.0.1:{port}/"


def kill9(router: HaproxyRouter) -> None:
    pid = router.running_pid(KEY)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)


def test_a_fresh_state_dir_with_the_same_catalogue_rebuilds_the_load_balancer(
        tmp_path: Path, store: Store, hosts: list[HaproxyRouter],
        backends: dict[str, Backend]) -> None:
    old = hosts[0]
    url = serve(old, backends)
    before = state(old)
    kill9(old)  # the old host is gone (its state directory with it, for all the new one knows)

    new = HaproxyRouter(tmp_path / "lb-2", intent=CatalogueIntent(store))
    hosts.append(new)
    assert new.known_keys() == [KEY] and not new.config_path(KEY).exists()
    repairs = LoadBalancerReconciler(new).reconcile_all()  # no runtime: as recorded
    assert [(r.key, r.restarted) for r in repairs] == [(KEY, True)]
    # Started with its servers in its config; only c's drain was set over the runtime API.
    assert repairs[0].servers == ["c"]
    assert state(new) == before
    assert new.frontend_port(KEY) == int(url.rsplit(":", 1)[1].strip("/"))
    with httpx.Client(timeout=5) as client:
        answers = Counter(client.get(url).text for _ in range(60))
    assert set(answers) == {"a", "b"} and answers["a"] > answers["b"], answers  # 100:50
    assert LoadBalancerReconciler(new).reconcile_all() == []  # in line: nothing to do


def test_a_removed_environment_is_not_rebuilt_elsewhere(
        tmp_path: Path, store: Store, hosts: list[HaproxyRouter],
        backends: dict[str, Backend]) -> None:
    serve(hosts[0], backends)
    hosts[0].stop(KEY)  # the environment's teardown
    new = HaproxyRouter(tmp_path / "lb-2", intent=CatalogueIntent(store))
    assert new.known_keys() == []
    assert LoadBalancerReconciler(new).reconcile_all() == []
    assert not new.config_path(KEY).exists()


def test_servers_moved_by_a_release_come_back_where_they_were_recorded(
        tmp_path: Path, store: Store, hosts: list[HaproxyRouter],
        backends: dict[str, Backend]) -> None:
    """Without a runtime the record is the only truth: a replica moved (drained host) is
    recorded at its new address by the release, and a rebuild follows the record."""
    old = hosts[0]
    url = serve(old, backends)
    old.add_server(KEY, "a", "127.0.0.1", backends["b"].port)  # v1-0 moved
    kill9(old)
    new = HaproxyRouter(tmp_path / "lb-2", intent=CatalogueIntent(store))
    hosts.append(new)
    LoadBalancerReconciler(new).reconcile_all()
    assert state(new)["a"][0] == backends["b"].port
    assert {httpx.get(url, timeout=5).text for _ in range(10)} == {"b"}


def test_a_catalogue_outage_does_not_keep_a_dead_load_balancer_down(
        tmp_path: Path, store: Store, backends: dict[str, Backend],
        caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(CatalogueIntent):
        down = False

        def read(self, key: str) -> dict[str, ServerIntent]:
            if self.down:
                raise ConnectionError("catalogue unreachable")
            return super().read(key)

        def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
            if self.down:
                raise ConnectionError("catalogue unreachable")
            super().write(key, servers)

        def keys(self) -> list[str]:
            if self.down:
                raise ConnectionError("catalogue unreachable")
            return super().keys()

    intent = Flaky(store)
    router = HaproxyRouter(tmp_path / "lb-1", intent=intent)
    try:
        url = serve(router, backends)
        kill9(router)
        intent.down = True
        assert LoadBalancerReconciler(router).reconcile_all() == []  # logged: restore failed
        assert router.is_running(KEY)  # from its config as it was
        assert {httpx.get(url, timeout=5).text for _ in range(20)} <= {"a", "b"}
        assert "intent store cannot be asked" in caplog.text
        intent.down = False
        [repair] = LoadBalancerReconciler(router).reconcile_all()
        assert repair.servers == ["c"]  # the drain comes back with the catalogue
    finally:
        router._kill(KEY)
