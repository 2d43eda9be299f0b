"""A dead HAProxy comes back with its servers, weights and drains, without a release.

Real dockerd, real HAProxy: replicas run as containers, the router records what it sets, the
reconciler (what the worker runs every few seconds) rebuilds a killed daemon from that record
at the addresses the containers answer on now.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.router import HaproxyRouter
from integrations.lb_reconcile import LoadBalancerReconciler
from schemas.models import StartVersionInput, VersionRef
from tests.integration.conftest import free_port

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
    port = free_port()
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
    os.kill(int(router.pid_path(KEY).read_text().split()[0]), signal.SIGKILL)
    deadline = time.monotonic() + 5
    while router.is_running(KEY) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not router.is_running(KEY)


def test_a_killed_haproxy_is_rebuilt_from_the_record(
        stack: tuple[HaproxyRouter, DockerRuntime, int]) -> None:
    router, runtime, port = stack
    url = f"http://127.0.0.1:{port}/"
    router.ensure_frontend(KEY, port, "/healthz")
    ref = VersionRef(app="lbrec", env_key=KEY, cluster="local", version=1)
    runtime.start_version(StartVersionInput(version=ref, image=IMAGE, replicas=3, ports=[8080],
                                            health_path="/healthz"))
    instances = runtime.wait_ready(ref, 3, 8080, "/healthz", deadline_seconds=60)
    for instance in instances:
        router.add_server(KEY, instance.name, instance.address, instance.port)
    router.set_weight(KEY, "v1-1", 40)
    router.drain(KEY, "v1-2")
    before = {s.name: (s.address, s.port, s.weight, s.admin_state)
              for s in router.servers(KEY)}
    assert _serving(url)

    _kill_haproxy(router)
    assert not _serving(url)
    killed = time.monotonic()
    repairs = LoadBalancerReconciler(router, runtime).reconcile_all()
    assert [repair.key for repair in repairs] == [KEY] and repairs[0].restarted
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
    container = docker.from_env().containers.get(f"slipway-{KEY}-v1-0")
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
