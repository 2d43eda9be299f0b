"""No single point: two workers serve the task queues at once, on a catalogue in a real
PostgreSQL server; kill -9 of the one running the release's activity mid-step, and the other
carries the release to success with nobody starting anything. Of the two, the one holding
the state directory's keeper lock keeps the load balancers; when it is gone the survivor
takes the lock and restarts a killed HAProxy.

Real processes throughout: the Temporal dev server, PostgreSQL, dockerd, HAProxy and two
``worker.py`` subprocesses; a loopback request loop through HAProxy the whole time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.support.chaos import WorkerProcess, completed
from tests.support.load import failures, request_loop
from tests.support.postgres import postgres_server
from workflows.release import ReleaseWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
APP = "twowork"  # its own: other suites release `shop` on the same engine
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sample-app"
# Bounded: the survivor must move the release on within this (heartbeat and sticky-queue
# timeouts are ~10 s each).
TAKEOVER_BUDGET_SECONDS = 60.0


@pytest.fixture
def pg_settings(settings: Settings) -> Iterator[Settings]:
    with postgres_server() as url:
        yield settings.model_copy(update={"database_url": url})


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


def register(store: Store, settings: Settings) -> str:
    """The sample app, gray in two steps with 6 s stable waits; its load balancer's URL."""
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    env = add_env(store, APP, "prod", cluster="local", replicas=2, cpu="", memory="64Mi",
                  ports=[8080], env_vars={}, runtime="docker", namespace="default",
                  health_path="/healthz", settings=settings, actor="ana", strategy="gray",
                  stable_seconds=6, approval="none")
    return f"http://127.0.0.1:{env.lb_port}/"


def versions_running(client: docker.DockerClient) -> list[str]:
    return sorted(container.labels["slipway.version"] for container in client.containers.list(
        all=True, filters={"label": f"slipway.app={APP}"}))


def serves(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def keeper_pid(settings: Settings) -> int:
    text = (settings.state_dir / "lb-keeper.lock").read_text().strip()
    return int(text) if text.isdigit() else 0


def haproxy_pid(settings: Settings) -> int:
    pid_files = sorted((settings.state_dir / "haproxy").glob("*.pid"))
    assert pid_files, "no HAProxy pid file"
    return int(pid_files[0].read_text().split()[0])


async def test_a_second_worker_carries_the_release_when_the_first_is_killed(
    temporal: WorkflowEnvironment, pg_settings: Settings, docker_client: docker.DockerClient,
    cleanup: None, tmp_path: Path,
) -> None:
    settings = pg_settings
    store = Store(settings.resolved_database_url())
    url = register(store, settings)
    address = temporal.client.service_client.config.target_host
    workers = [WorkerProcess(settings, address, tmp_path / f"worker-{name}.log")
               for name in ("a", "b")]
    try:
        for worker in workers:
            worker.start()

        async def release(label: str) -> WorkflowHandle[Any, Any]:
            request, summary = validate_release(store, ReleaseRequest(
                app=APP, env="prod", requested_by="ana", version_label=label))
            return (await start_release(temporal.client, settings, request, summary)).handle

        first = await follow(await release("1.0.0"), lambda _s: None)
        assert first.baseline_version == 1
        with request_loop(url, max_seconds=150) as outcomes:
            handle = await release("2.0.0")
            # Inside a stable wait of a later step: the activity runs on one of the two.
            deadline = time.monotonic() + 90
            victim = None
            while victim is None:
                assert time.monotonic() < deadline, "the release never reached a stable wait"
                status = await handle.query(ReleaseWorkflow.status)
                pending = (await handle.describe()).raw_description.pending_activities
                running = [activity.last_worker_identity for activity in pending
                           if activity.activity_type.name == "watch_health"
                           and activity.last_worker_identity]
                if status.step >= 2 and running:
                    pid = int(running[0].split("@")[0])
                    victim = next(w for w in workers if pid in w.pids)
                await asyncio.sleep(0.05)
            survivor = next(w for w in workers if w is not victim)
            done_at_kill = await completed(handle)
            victim.kill()
            killed = time.monotonic()
            while await completed(handle) == done_at_kill:
                assert time.monotonic() - killed < TAKEOVER_BUDGET_SECONDS, (
                    "the surviving worker did not move the release on")
                await asyncio.sleep(0.1)
            moved_on = time.monotonic() - killed
            outcome = await follow(handle, lambda _s: None)
            finished = time.monotonic() - killed
            time.sleep(0.5)
        print(f"\nkill -9 of the worker running the stable wait: the other worker moved the "
              f"release on {moved_on:.1f}s later and finished it {finished:.1f}s after the "
              f"kill; requests through HAProxy: {dict(outcomes)}")
        assert outcome.baseline_version == 2
        assert failures(outcomes) == {}
        assert versions_running(docker_client) == ["2", "2"]

        # The survivor keeps the load balancers now, whoever kept them before.
        deadline = time.monotonic() + 15
        while keeper_pid(settings) not in survivor.pids:
            assert time.monotonic() < deadline, "the survivor never took the keeper's lock"
            time.sleep(0.2)
        os.kill(haproxy_pid(settings), signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + 20
        while not serves(url):
            assert time.monotonic() < deadline, "the survivor never restarted HAProxy"
            time.sleep(0.1)
        print(f"HAProxy killed: the surviving worker had it serving again after "
              f"{time.monotonic() - killed:.1f}s")
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            print(f"\n--- {worker.log.name} (tail)\n"
                  + "\n".join(worker.log.read_text(errors="replace").splitlines()[-8:]))
