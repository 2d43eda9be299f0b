"""Chaos: a worker killed with ``kill -9`` inside the build (``build_image``), a gray step's
``start_version`` / ``wait_ready``, or a stable wait (``watch_health``), lets the release move
on within 30 s of a new worker starting.

Real processes throughout: the Temporal dev server, dockerd, HAProxy, and the worker as a
subprocess running ``worker.py`` with this test's settings (in the environment, as ``slipway
up`` would start it). A loopback request loop runs through HAProxy the whole time: the kill
must cost no request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_gray_docker import lb_url, versions_running
from tests.integration.test_release_docker import APP, register_shop
from tests.support.chaos import WorkerProcess, completed, kill_inside, seconds_to_progress
from tests.support.load import failures, request_loop

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

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


@pytest.mark.parametrize(("kill_inside_kinds", "stable_seconds"), [
    ({"start_version", "wait_ready", "bring_up_on_host"}, 1),
    ({"watch_health"}, 4),
    ({"build_image"}, 1),
], ids=["start", "stable-wait", "build"])
async def test_worker_killed_inside_a_gray_step_recovers_on_a_new_worker(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path, kill_inside_kinds: set[str], stable_seconds: int,
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
        # A later step, where the canary serves beside v1 already; a build comes first.
        killed_in = await kill_inside(
            handle, old, kill_inside_kinds,
            when=lambda status: status.step >= 2 or "build_image" in kill_inside_kinds)
        done_at_kill = await completed(handle)
        new = WorkerProcess(settings, address, tmp_path / "worker-new.log")
        workers.append(new)
        new.start()
        recovered = await seconds_to_progress(handle, done_at_kill, time.monotonic(),
                                              f"killed inside {killed_in}")
        outcome = await follow(handle, lambda _s: None)
        time.sleep(0.5)
    print(f"\nworker killed inside {killed_in}; the release moved on {recovered:.1f}s after "
          f"the new worker started; requests through HAProxy: {dict(outcomes)}")
    assert outcome.baseline_version == 2
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 2.0.0"] > 0
    assert versions_running(docker_client) == ["2", "2"]
