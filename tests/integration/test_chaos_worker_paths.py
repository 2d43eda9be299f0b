"""Chaos: a worker killed with ``kill -9`` inside a drain that waits for in-flight requests,
inside a slow ``stop_version``, and inside the undo of a failed canary. Each time a new
worker picks the release up within 30 s of starting, and the release ends where it should:
the drain's in-flight requests all finish, the stopped version is replaced, the undo leaves
exactly the old version serving with one baseline.

Same real processes as ``test_chaos_worker``: the Temporal dev server, dockerd, HAProxy, and
``worker.py`` as a subprocess, killed by pid.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import CatalogueError, Store
from catalogue.tables import Baseline
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_chaos_worker import cleanup, workers
from tests.integration.test_gray_docker import lb_url, versions_running
from tests.integration.test_release_docker import APP, SAMPLE, register_shop
from tests.support.chaos import WorkerProcess, completed, kill_inside, seconds_to_progress
from tests.support.load import failures, request_loop

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

__all__ = ["cleanup", "workers"]  # fixtures used by name

SLOW_SECONDS = 12
UNDO_ACTIVITIES = {"remove_from_lb", "remove_version", "start_version", "wait_ready",
                   "bring_up_on_host", "add_to_lb"}


async def start(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                **fields: str) -> WorkflowHandle[Any, Any]:
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", requested_by="ana", **fields))
    return (await start_release(temporal.client, settings, request, summary)).handle


@contextmanager
def slow_requests(url: str, count: int) -> Iterator[list[str]]:
    """``count`` concurrent requests that each take :data:`SLOW_SECONDS` to answer, in
    flight through HAProxy while the block runs; yields their answers once it ends."""
    answers: list[str] = []

    def one() -> None:
        try:
            response = httpx.get(f"{url}cgi-bin/slow?{SLOW_SECONDS}", timeout=SLOW_SECONDS + 20)
            answers.append(f"{response.status_code} {response.text.strip()}")
        except httpx.HTTPError as error:
            answers.append(type(error).__name__)

    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every request reached a server before the release starts
    try:
        yield answers
    finally:
        for thread in threads:
            thread.join(timeout=SLOW_SECONDS + 25)


def first_worker(settings: Settings, temporal: WorkflowEnvironment, tmp_path: Path,
                 workers: list[WorkerProcess]) -> WorkerProcess:
    worker = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                           tmp_path / "worker-old.log")
    workers.append(worker)
    worker.start()
    return worker


async def replace_worker(handle: WorkflowHandle[Any, Any], settings: Settings,
                         temporal: WorkflowEnvironment, tmp_path: Path,
                         workers: list[WorkerProcess], killed_in: str) -> float:
    """Start a new worker; return the seconds until the release moved on."""
    done_at_kill = await completed(handle)
    new = WorkerProcess(settings, temporal.client.service_client.config.target_host,
                        tmp_path / "worker-new.log")
    workers.append(new)
    new.start()
    return await seconds_to_progress(handle, done_at_kill, time.monotonic(),
                                     f"killed inside {killed_in}")


async def test_worker_killed_inside_a_drain_lets_in_flight_requests_finish(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=1)
    url = lb_url(store)
    old = first_worker(settings, temporal, tmp_path, workers)
    assert (await follow(await start(temporal, settings, store, version_label="1.0.0"),
                         lambda _s: None)).baseline_version == 1

    with request_loop(url, max_seconds=90) as outcomes, \
            slow_requests(url, count=4) as slow_answers:
        handle = await start(temporal, settings, store, version_label="2.0.0")
        # The first drain of v1 waits for the slow requests its server holds.
        killed_in = await kill_inside(handle, old, {"drain", "shift"})
        recovered = await replace_worker(handle, settings, temporal, tmp_path, workers,
                                         killed_in)
        outcome = await follow(handle, lambda _s: None)
    print(f"\nworker killed inside drain; moved on {recovered:.1f}s after the new worker "
          f"started; slow requests: {slow_answers}; requests: {dict(outcomes)}")
    assert outcome.baseline_version == 2
    assert slow_answers == [f"200 slow 1.0.0 after {SLOW_SECONDS}s"] * 4
    assert failures(outcomes) == {}
    assert versions_running(docker_client) == ["2", "2"]


async def test_worker_killed_inside_a_slow_stop_replaces_the_version(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    # Recreate stops v1 before it starts v2; each v1 container takes 4 s to stop.
    register_shop(store, settings, strategy="recreate", env_vars={"SHUTDOWN_DELAY": "4"})
    url = lb_url(store)
    old = first_worker(settings, temporal, tmp_path, workers)
    assert (await follow(await start(temporal, settings, store, version_label="1.0.0"),
                         lambda _s: None)).baseline_version == 1

    handle = await start(temporal, settings, store, version_label="2.0.0")
    killed_in = await kill_inside(handle, old, {"stop_version"})
    recovered = await replace_worker(handle, settings, temporal, tmp_path, workers, killed_in)
    outcome = await follow(handle, lambda _s: None)
    print(f"\nworker killed inside stop_version; moved on {recovered:.1f}s after the new "
          "worker started")
    assert outcome.baseline_version == 2
    assert httpx.get(url).text.strip() == "sample-app 2.0.0"
    assert versions_running(docker_client) == ["2", "2"]


async def test_worker_killed_inside_the_undo_of_a_failed_canary_finishes_the_undo(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], cleanup: None,
    tmp_path: Path,
) -> None:
    register_shop(store, settings, strategy="gray", stable_seconds=8)
    url = lb_url(store)
    old = first_worker(settings, temporal, tmp_path, workers)
    assert (await follow(await start(temporal, settings, store, version_label="1.0.0"),
                         lambda _s: None)).baseline_version == 1
    # /healthz of this build fails 2 s after start: the stable wait catches it, the undo runs.
    bad = f"slipway/{APP}:bad-undo"
    docker_client.images.build(path=str(SAMPLE), tag=bad, rm=True,
                               buildargs={"BASE_IMAGE": settings.base_image,
                                          "VERSION": "2.0.0-bad", "FAIL_HEALTH_AFTER": "2"})
    try:
        with request_loop(url, max_seconds=90) as outcomes:
            handle = await start(temporal, settings, store, image=bad)
            killed_in = await kill_inside(handle, old, UNDO_ACTIVITIES,
                                          when=lambda status: status.stage == "rolling_back")
            recovered = await replace_worker(handle, settings, temporal, tmp_path, workers,
                                             killed_in)
            with pytest.raises(CatalogueError, match="rolled_back: v2 unhealthy"):
                await follow(handle, lambda _s: None)
            time.sleep(0.5)
    finally:
        docker_client.images.remove(bad, force=True)
    print(f"\nworker killed inside the undo ({killed_in}); moved on {recovered:.1f}s after "
          f"the new worker started; requests: {dict(outcomes)}")
    assert failures(outcomes) == {}
    assert httpx.get(url).text.strip() == "sample-app 1.0.0"
    assert versions_running(docker_client) == ["1", "1"]
    with store.session() as session:
        assert [b.version for b in session.exec(select(Baseline)).all()] == [1]
