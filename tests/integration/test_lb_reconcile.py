"""A dead HAProxy comes back with its servers, weights and drains, without a release; a
running one is adopted untouched.

Real dockerd, real HAProxy: replicas run as containers, the router records what it sets (and
writes it into the daemon's config), the reconciler (what the worker runs every few seconds)
restarts a killed daemon from that record at the addresses the containers answer on now.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import httpx
import pytest

from catalogue.lb_intent import CatalogueIntent
from catalogue.store import Store
from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyRouter
from integrations.lb_reconcile import LoadBalancerReconciler
from schemas.models import StartVersionInput, VersionRef
from tests.support.hermetic import lb_port_start
from tests.support.load import failures, request_loop
from tests.support.load_spans import wait_exited

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
KEY = "lbrec-prod-local"
IMAGE = "slipway/lbrec:1"


@pytest.fixture
def stack(tmp_path: Path, docker_client: docker.DockerClient,
          ) -> Iterator[tuple[HaproxyRouter, DockerRuntime, int]]:
    docker_client.images.build(path=str(SAMPLE), tag=IMAGE, rm=True,
                               buildargs={"BASE_IMAGE": "slipway/busybox:local",
                                          "VERSION": "1.0.0"})
    router = HaproxyRouter(tmp_path / "state")
    runtime = DockerRuntime(["unix:///var/run/docker.sock"])
    port = lb_port_start(span=1)
    yield router, runtime, port
    router.stop(KEY)
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.env={KEY}"}):
        container.remove(force=True)


def _serving(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).text.strip() == "sample-app 1.0.0"
    except httpx.HTTPError:
        return False


def _kill_haproxy(router: HaproxyRouter) -> None:
    pid = int(router.pid_path(KEY).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    wait_exited(pid)
    assert not router.is_running(KEY)


def _serve_three(router: HaproxyRouter, runtime: DockerRuntime, port: int) -> VersionRef:
    """v1 × 3 behind KEY's HAProxy: v1-1 at weight 40, v1-2 draining."""
    router.ensure_frontend(KEY, port, "/healthz")
    ref = VersionRef(app="lbrec", env_key=KEY, cluster="local", version=1)
    runtime.start_version(StartVersionInput(version=ref, image=IMAGE, replicas=3, ports=[8080],
                                            health_path="/healthz"))
    instances = runtime.wait_ready(ref, 3, 8080, "/healthz", deadline_seconds=60)
    for instance in instances:
        router.add_server(KEY, instance.name, instance.address, instance.port)
    router.set_weight(KEY, "v1-1", 40)
    router.drain(KEY, "v1-2")
    return ref


def test_a_killed_haproxy_is_rebuilt_from_the_record(
        stack: tuple[HaproxyRouter, DockerRuntime, int]) -> None:
    router, runtime, port = stack
    url = f"http://127.0.0.1:{port}/"
    ref = _serve_three(router, runtime, port)
    before = {s.name: (s.address, s.port, s.weight, s.admin_state)
              for s in router.servers(KEY)}
    assert _serving(url)

    _kill_haproxy(router)
    assert not _serving(url)
    killed = time.monotonic()
    repairs = LoadBalancerReconciler(router, runtime).reconcile_all()
    assert [repair.key for repair in repairs] == [KEY] and repairs[0].restarted
    # Started with its servers in its config: only the drain state was set afterwards.
    assert repairs[0].servers == ["v1-2"]
    assert _serving(url)
    print(f"\nkilled HAProxy serving again {time.monotonic() - killed:.2f} s after one pass")
    after = {s.name: (s.address, s.port, s.weight, s.admin_state) for s in router.servers(KEY)}
    assert after == before  # same servers, weights and drain state

    # The next release's ensure_frontend on a dead daemon restores the servers too: no
    # empty backend for a canary to take over.
    _kill_haproxy(router)
    assert router.ensure_frontend(KEY, port, "/healthz")
    assert {s.name for s in router.servers(KEY)} == {"v1-0", "v1-1", "v1-2"}

    # A replica restarted by the engine answers on a new host port: the server follows it.
    container, = docker.from_env().containers.list(all=True, filters={"label": [
        f"slipway.env={KEY}", "slipway.version=1", "slipway.index=0"]})
    container.stop(timeout=1)
    container.start()
    runtime.wait_ready(ref, 3, 8080, "/healthz", deadline_seconds=60)
    live = {i.name: (i.address, i.port) for i in runtime.instances(KEY, port=None)}
    LoadBalancerReconciler(router, runtime).reconcile_all()
    servers = {s.name: (s.address, s.port) for s in router.servers(KEY)}
    assert servers == live
    assert _serving(url)

    # Nothing to do on a healthy environment.
    assert LoadBalancerReconciler(router, runtime).reconcile_all() == []


def test_a_replacement_host_rebuilds_from_the_catalogue_at_the_live_addresses(
        stack: tuple[HaproxyRouter, DockerRuntime, int], tmp_path: Path) -> None:
    """The catalogue as the intent store: a load-balancer host with a fresh state directory
    (the old one lost with its host) starts the environment's HAProxy from the catalogue,
    its servers where the replicas answer now."""
    _router, runtime, port = stack
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    old = HaproxyRouter(tmp_path / "lb-old", intent=CatalogueIntent(store))
    new = HaproxyRouter(tmp_path / "lb-new", intent=CatalogueIntent(store))
    try:
        _serve_three(old, runtime, port)
        before = {s.name: (s.address, s.port, s.weight, s.admin_state)
                  for s in old.servers(KEY)}
        _kill_haproxy(old)
        repairs = LoadBalancerReconciler(new, runtime).reconcile_all()
        assert [(r.key, r.restarted) for r in repairs] == [(KEY, True)]
        assert {s.name: (s.address, s.port, s.weight, s.admin_state)
                for s in new.servers(KEY)} == before
        assert _serving(f"http://127.0.0.1:{port}/")
    finally:
        for router in (old, new):
            router._kill(KEY)
        store.engine.dispose()


def test_a_worker_that_starts_adopts_a_serving_load_balancer(
        stack: tuple[HaproxyRouter, DockerRuntime, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What `slipway up` after `slipway down` does: a new worker's reconciler (a new router
    on the same state directory) finds the daemon running, sends it nothing that changes it,
    and no request fails meanwhile."""
    router, runtime, port = stack
    url = f"http://127.0.0.1:{port}/"
    _serve_three(router, runtime, port)
    pid, config = router.running_pid(KEY), router.config_path(KEY).read_text()
    sent: list[str] = []
    original = HaproxyRouter._send

    def recording(self: HaproxyRouter, key: str, command: str) -> str:
        sent.append(command)
        return original(self, key, command)

    monkeypatch.setattr(HaproxyRouter, "_send", recording)
    with request_loop(url, max_seconds=30) as outcomes:
        fresh = LoadBalancerReconciler(HaproxyRouter(router.state_dir),
                                       DockerRuntime(["unix:///var/run/docker.sock"]))
        for _ in range(3):
            assert fresh.reconcile_all() == []
        time.sleep(0.5)
    assert failures(outcomes) == {} and outcomes.total() > 0, outcomes
    assert sent and all(command.startswith("show ") for command in sent), sent
    assert router.running_pid(KEY) == pid
    assert router.config_path(KEY).read_text() == config


def test_an_unreachable_engine_does_not_keep_a_killed_load_balancer_down(
        stack: tuple[HaproxyRouter, DockerRuntime, int]) -> None:
    router, runtime, port = stack
    url = f"http://127.0.0.1:{port}/"
    _serve_three(router, runtime, port)
    before = {s.name: (s.port, s.weight) for s in router.servers(KEY)}
    _kill_haproxy(router)
    engine_gone = DockerRuntime([f"unix://{router.state_dir}/no-such-docker.sock"])
    assert LoadBalancerReconciler(router, engine_gone).reconcile_all() == []  # logged: waits
    assert router.is_running(KEY)
    assert _serving(url)  # from the record, before the engine answers again
    # As recorded; the draining server has the config's weight 0 until a pass can restore
    # its drain state (which needs the engine's answer first).
    after = {s.name: (s.port, s.weight) for s in router.servers(KEY)}
    assert after == {**before, "v1-2": (before["v1-2"][0], 0)}


def test_wait_for_exit_wakes_when_a_load_balancer_dies(
        stack: tuple[HaproxyRouter, DockerRuntime, int]) -> None:
    router, runtime, port = stack
    router.ensure_frontend(KEY, port, None)
    reconciler = LoadBalancerReconciler(router, runtime)
    began = time.monotonic()
    assert not reconciler.wait_for_exit(0.3)  # nothing died: the whole timeout
    assert time.monotonic() - began >= 0.3
    woke: list[float] = []

    def wait() -> None:
        if reconciler.wait_for_exit(10):
            woke.append(time.monotonic())

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    killed = time.monotonic()
    os.kill(router.running_pid(KEY) or 0, signal.SIGKILL)
    waiter.join(timeout=15)
    assert woke and woke[0] - killed < 1.0, woke
    print(f"\nwait_for_exit woke {woke[0] - killed:.3f} s after the kill")
    assert [repair.key for repair in reconciler.reconcile_all()] == [KEY]
    assert router.is_running(KEY)


def test_a_lane_route_follows_its_restarted_instance(
        stack: tuple[HaproxyRouter, DockerRuntime, int], docker_client: docker.DockerClient,
        ) -> None:
    router, runtime, port = stack
    ref = _serve_three(router, runtime, port)
    # The lane's instance: a container of the lane's own environment, routed from KEY.
    source = "lbrec-lane-l1"
    lane_ref = ref.model_copy(update={"env_key": source})
    runtime.start_version(StartVersionInput(
        version=lane_ref, image=IMAGE, replicas=1, ports=[8080], health_path="/healthz",
        env_vars={"APP_VERSION": "lane"}))
    try:
        [instance] = runtime.wait_ready(lane_ref, 1, 8080, "/healthz", deadline_seconds=60)
        lanes = LaneRouter(router)
        lanes.route(KEY, "l1", instance.address, instance.port, source=source,
                    server=instance.name)
        url, keyed = f"http://127.0.0.1:{port}/", {"x-slipway-lane": "l1"}
        assert httpx.get(url, headers=keyed, timeout=5).text.strip() == "sample-app lane"

        container, = docker_client.containers.list(filters={"label": f"slipway.env={source}"})
        container.stop(timeout=1)
        container.start()
        [moved] = runtime.wait_ready(lane_ref, 1, 8080, "/healthz", deadline_seconds=60)
        assert moved.port != instance.port
        repairs = LoadBalancerReconciler(router, runtime).reconcile_all()
        assert [(r.key, r.servers) for r in repairs] == [(KEY, ["lane l1"])]
        route = lanes.table(KEY).routes["l1"]
        assert (route.address, route.port) == (moved.address, moved.port)
        assert _eventually(lambda: httpx.get(url, headers=keyed, timeout=5).text.strip()
                           == "sample-app lane")
    finally:
        for container in docker_client.containers.list(
                all=True, filters={"label": f"slipway.env={source}"}):
            container.remove(force=True)


def _eventually(check: Callable[[], bool], seconds: float = 15) -> bool:
    """``check`` true within ``seconds`` (health checks bring a moved server back)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
