"""Chaos: HAProxy killed -9 under load (idle, and inside a stable wait) comes back without a
release and loses only what it held, and a new-version container killed during a stable wait
rolls the release back.

Real processes throughout: the Temporal dev server, dockerd, HAProxy, ``worker.py`` and the
host's ``agent.py`` as subprocesses; the agent's load-balancer keeper (woken by the daemon's
exit) is what brings HAProxy back, on the listening socket it holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from catalogue.store import CatalogueError, Store
from integrations.haproxy.router import HaproxyRouter
from schemas.settings import Settings
from starter.service.releases import follow
from tests.integration.test_chaos_worker import cleanup, start, workers
from tests.integration.test_gray_docker import lb_url, versions_running
from tests.integration.test_release_docker import APP, register_shop
from tests.support.chaos import WorkerProcess
from tests.support.load import request_loop
from tests.support.load_spans import REFUSED, RESET, Spans, concurrent_requests, wait_exited
from workflows.release import ReleaseWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
__all__ = ["cleanup", "workers"]  # fixtures shared with the worker chaos tests

KEY = f"{APP}-prod-local"
SERVE_AGAIN_BUDGET_SECONDS = 10.0
# Concurrent clients of the request loop: several connections open at any instant.
CLIENTS = 4


def kill_haproxy(settings: Settings) -> tuple[float, float]:
    """kill -9 of the environment's HAProxy by pid; (when it was signalled, when it was gone:
    every thread exited, its sockets closed)."""
    router = HaproxyRouter(settings.state_dir)
    pid = int(router.pid_path(KEY).read_text().split()[0])
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return killed, wait_exited(pid)


def serves(url: str, version: str) -> bool:
    try:
        return httpx.get(url, timeout=1).text.strip() == f"sample-app {version}"
    except httpx.HTTPError:
        return False


async def wait_stage(handle: object, stage: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (await handle.query(ReleaseWorkflow.status)).stage != stage:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, f"the release never reached {stage}"
        await asyncio.sleep(0.05)


@dataclass
class KillFigures:
    """What one kill -9 under load cost, and the bound it must keep."""

    what: str
    requests: int
    failed: int
    in_flight: int  # requests open between the signal and the process's exit
    refused: int  # connections refused: nothing listened on the port
    other: dict[str, int]  # failures neither in flight nor refused (must be none)
    no_listener_seconds: float  # from the exit to the first answer of the new daemon

    def line(self) -> str:
        return (f"{self.what}: {self.failed} failed of {self.requests} requests; bound "
                f"{self.in_flight} in flight + {self.refused} refused while nothing listened "
                f"({self.no_listener_seconds:.2f} s); other failures {self.other or 'none'}")


async def kill_under_load(settings: Settings, spans: Spans, what: str, url: str,
                          versions: tuple[str, ...]) -> KillFigures:
    """kill -9 while ``spans`` runs, wait until the environment answers again, then 1 s more."""
    killed, dead = kill_haproxy(settings)
    while not any(serves(url, version) for version in versions):
        assert time.monotonic() - dead < SERVE_AGAIN_BUDGET_SECONDS, "HAProxy stayed down"
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)
    window = [span for span in spans.snapshot() if span.done >= killed]
    back = min((span.sent for span in window if span.ok and span.sent >= dead), default=dead)
    in_flight = spans.in_flight(killed, dead)
    failed = [span for span in window if not span.ok]
    refused = [span for span in failed if span.outcome == REFUSED]
    other = Counter(span.outcome for span in failed
                    if span.outcome != REFUSED and span not in in_flight)
    return KillFigures(what, len(spans.snapshot()), len(failed), len(in_flight), len(refused),
                       dict(other), back - dead)


async def test_a_killed_haproxy_loses_only_what_it_held_idle_and_mid_release(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    """kill -9 of the environment's HAProxy under a bounded request loop of CLIENTS clients:
    failed requests ≤ those in flight at the kill. The LB host's agent holds the listening
    socket, so connections made while no daemon runs wait for the one it starts again
    (none refused), and that daemon starts with its servers in its config, so no request
    meets an empty backend (503). Before: 217 failed requests in the window, 503s among
    them; then, with servers in the config, 19–38 refused while nothing listened."""
    register_shop(store, settings, strategy="gray", stable_seconds=6)
    url = lb_url(store)
    worker = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                           tmp_path / "worker.log")
    workers.append(worker)
    worker.start()
    assert (await follow(await start(temporal, settings, store, "1.0.0"),
                         lambda _s: None)).baseline_version == 1

    with concurrent_requests(url, clients=CLIENTS, max_seconds=60) as spans:
        await asyncio.sleep(1.0)
        idle = await kill_under_load(settings, spans, "killed idle", url, ("1.0.0",))
    idle_counts = spans.counts()
    print(f"\n{idle.line()}")

    with concurrent_requests(url, clients=CLIENTS, max_seconds=120) as spans:
        handle = await start(temporal, settings, store, "2.0.0")
        await wait_stage(handle, "waiting_stable")  # the canary serves beside v1
        mid = await kill_under_load(settings, spans, "killed in a stable wait", url,
                                    ("1.0.0", "2.0.0"))
        print(mid.line())
        outcome = await follow(handle, lambda _s: None)
    counts = spans.counts()
    print(f"requests: idle {dict(idle_counts)}, mid-release {dict(counts)}")
    for figures in (idle, mid):
        assert figures.other == {}, figures.line()
        assert figures.refused == 0, figures.line()
        assert figures.failed <= figures.in_flight, figures.line()
        assert figures.no_listener_seconds < SERVE_AGAIN_BUDGET_SECONDS
    assert outcome.baseline_version == 2
    assert serves(url, "2.0.0")
    assert versions_running(docker_client) == ["2", "2"]
    # Only the outage itself may cost requests, never a wrong or empty answer.
    for seen in (idle_counts, counts):
        assert {key for key in seen if not key.startswith("200 sample-app ")} <= {
            REFUSED, RESET}, seen


async def test_a_new_version_container_killed_in_a_stable_wait_rolls_back(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=8)
    url = lb_url(store)
    worker = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                           tmp_path / "worker.log")
    workers.append(worker)
    worker.start()
    await follow(await start(temporal, settings, store, "1.0.0"), lambda _s: None)

    with request_loop(url, max_seconds=90) as outcomes:
        handle = await start(temporal, settings, store, "2.0.0")
        await wait_stage(handle, "waiting_stable")
        canary, = docker_client.containers.list(filters={"label": [
            f"slipway.env={KEY}", "slipway.version=2", "slipway.index=0"]})
        canary.kill()  # an explicit kill: the engine does not restart it
        with pytest.raises(CatalogueError, match="rolled_back"):
            await follow(handle, lambda _s: None)
    print(f"\ncanary killed in its stable wait; requests: {dict(outcomes)}")
    assert serves(url, "1.0.0")
    assert versions_running(docker_client) == ["1", "1"]
    assert outcomes["200 sample-app 1.0.0"] > 0
