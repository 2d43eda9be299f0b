"""Chaos: a worker killed with ``kill -9`` inside the build (``build_image``), a gray step's
``start_version`` / ``wait_ready``, or a stable wait (``watch_health``), lets the release move
on within 30 s of a new worker starting.

Real processes throughout: the Temporal dev server, dockerd, HAProxy, and the worker as a
subprocess running ``worker.py`` with this test's settings (in the environment, as ``slipway
up`` would start it). A loopback request loop runs through HAProxy the whole time: the kill
must cost no request.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_gray_docker import lb_url, versions_running
from tests.integration.test_release_docker import APP, register_shop
from tests.support.load import failures, request_loop
from workflows.release import ReleaseWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

REPO = Path(__file__).resolve().parents[2]
RECOVERY_BUDGET_SECONDS = 30.0


class WorkerProcess:
    """``python worker.py`` with the test's settings; its output goes to a log file."""

    def __init__(self, settings: Settings, address: str, log: Path) -> None:
        credentials = {name: value.get_secret_value()
                       for name, value in settings.credentials.items()}
        self.env = {
            **os.environ, "PYTHONPATH": str(REPO),
            "SLIPWAY_STATE_DIR": str(settings.state_dir),
            "SLIPWAY_DATABASE_URL": settings.resolved_database_url(),
            "SLIPWAY_REGISTRY": settings.registry,
            "SLIPWAY_REGISTRY_CREDENTIAL": settings.registry_credential,
            "SLIPWAY_CREDENTIALS": json.dumps(credentials),
            "SLIPWAY_LB_PORT_START": str(settings.lb_port_start),
            "SLIPWAY_TASK_QUEUE": settings.task_queue,
            "SLIPWAY_TEMPORAL_ADDRESS": address,
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, str(REPO / "worker.py")],
                                            cwd=REPO, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """kill -9, by pid: no shutdown, no goodbye to the server."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """The worker processes a test starts: stopped (SIGTERM) at the end, logs shown."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()
    for worker in started:
        print(f"\n--- {worker.log.name} (tail)\n"
              + "\n".join(worker.log.read_text(errors="replace").splitlines()[-15:]))


@pytest.fixture
def cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True,
                                                   filters={"label": f"slipway.app={APP}"}):
        container.remove(force=True)


async def start(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                label: str) -> WorkflowHandle[Any, Any]:
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", requested_by="ana", version_label=label))
    return (await start_release(temporal.client, settings, request, summary)).handle


async def running(handle: WorkflowHandle[Any, Any]) -> list[str]:
    """Types of the activities a worker is running for the release right now."""
    description = await handle.describe()
    return [activity.activity_type.name
            for activity in description.raw_description.pending_activities
            if activity.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED]


async def completed(handle: WorkflowHandle[Any, Any]) -> int:
    """How many activities of the release have completed so far."""
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    return kinds.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)


@pytest.mark.parametrize(("kill_inside", "stable_seconds"), [
    ({"start_version", "wait_ready"}, 1),
    ({"watch_health"}, 4),
    ({"build_image"}, 1),
], ids=["start", "stable-wait", "build"])
async def test_worker_killed_inside_a_gray_step_recovers_on_a_new_worker(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path, kill_inside: set[str], stable_seconds: int,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=stable_seconds)
    url = lb_url(store)
    address = temporal.client.service_client.config.target_host
    old = WorkerProcess(settings, address, tmp_path / "worker-old.log")
    workers.append(old)
    old.start()
    baseline = await follow(await start(temporal, settings, store, "1.0.0"), lambda _s: None)
    assert baseline.baseline_version == 1

    with request_loop(url, max_seconds=90) as outcomes:
        handle = await start(temporal, settings, store, "2.0.0")
        killed_in = ""
        deadline = time.monotonic() + 60
        while not killed_in and time.monotonic() < deadline:
            status = await handle.query(ReleaseWorkflow.status)
            # A later step, where the canary serves beside v1 already; a build comes first.
            if status.step >= 2 or "build_image" in kill_inside:
                inside = [kind for kind in await running(handle) if kind in kill_inside]
                if inside:
                    old.kill()
                    killed_in = inside[0]
            await asyncio.sleep(0.02)
        assert killed_in, f"the release never ran {', '.join(sorted(kill_inside))}"
        done_at_kill = await completed(handle)
        new = WorkerProcess(settings, address, tmp_path / "worker-new.log")
        workers.append(new)
        new.start()
        started_at = time.monotonic()
        # Progress: an activity completes again (the killed one, retried on the new worker).
        while await completed(handle) == done_at_kill:
            assert time.monotonic() - started_at < RECOVERY_BUDGET_SECONDS, (
                f"no progress {RECOVERY_BUDGET_SECONDS}s after the new worker started "
                f"(killed inside {killed_in})")
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - started_at
        outcome = await follow(handle, lambda _s: None)
        time.sleep(0.5)
    print(f"\nworker killed inside {killed_in}; the release moved on {recovered:.1f}s after "
          f"the new worker started; requests through HAProxy: {dict(outcomes)}")
    assert outcome.baseline_version == 2
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 2.0.0"] > 0
    assert versions_running(docker_client) == ["2", "2"]
