"""Chaos: a worker killed with ``kill -9`` during a release train (inside a member's gray
stable wait) and during a freeze wait (a release in stage ``frozen``). Each time a new worker
picks the work up: the train completes with both applications serving the new version through
their own HAProxy, and the frozen release completes once the freeze is lifted.

Real processes throughout, as in ``test_chaos_worker``: the Temporal dev server, dockerd,
HAProxy, and ``worker.py`` as a subprocess, killed by pid. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import docker
import httpx
import pytest
from sqlmodel import select
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from catalogue.releases import env_key
from catalogue.store import Store
from catalogue.tables import Train
from schemas.enums import ReleaseState
from schemas.freezes import RuleKind
from schemas.models import ReleaseRequest, ReleaseStatus
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.freezes import add, lift, make_rule
from starter.service.releases import start_release, validate_release
from starter.service.trains import start_train, train_request
from tests.integration.test_chaos_worker import workers
from tests.integration.test_release_docker import SAMPLE
from tests.support.chaos import WorkerProcess, kill_inside
from tests.support.load import failures, request_loop
from workflows.release import ReleaseWorkflow
from workflows.train import TrainWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

__all__ = ["workers"]  # fixture used by name

IMAGE = "slipway/chaos-train-sample"
SUFFIX = uuid.uuid4().hex[:6]
TRAIN_APPS = (f"ctr-a{SUFFIX}", f"ctr-b{SUFFIX}")
FROZEN_APP = f"cfz-{SUFFIX}"
T = TypeVar("T")
# A query without a live worker is held by the server: ask again rather than wait ~30 s.
QUERY_TIMEOUT = timedelta(seconds=5)


@pytest.fixture(scope="module")
def images(docker_client: docker.DockerClient) -> Iterator[None]:
    """v1 and v2 of the sample app, built once; containers of this module's apps removed."""
    base = Settings().base_image  # the settings fixture's default (per test, not per module)
    for tag in ("1.0.0", "2.0.0"):
        docker_client.images.build(path=str(SAMPLE), tag=f"{IMAGE}:{tag}", rm=True,
                                   buildargs={"BASE_IMAGE": base, "VERSION": tag})
    yield
    for app in (*TRAIN_APPS, FROZEN_APP):
        for container in docker_client.containers.list(
                all=True, filters={"label": f"slipway.app={app}"}):
            container.remove(force=True)
    for tag in ("1.0.0", "2.0.0"):
        docker_client.images.remove(f"{IMAGE}:{tag}", force=True)


def register(store: Store, settings: Settings, app: str, strategy: str,
             stable_seconds: int = 0, gray_steps: list[str] | None = None) -> int:
    """Register ``app`` with a prod environment (2 replicas, no approval); its LB port."""
    register_app(store, app, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, app, "ana")
    env = add_env(store, app, "prod", cluster="local", replicas=2, cpu="", memory="64Mi",
                  ports=[8080], env_vars={}, runtime="docker", namespace="default",
                  health_path="/healthz", settings=settings, actor="ana", strategy=strategy,
                  gray_steps=gray_steps, stable_seconds=stable_seconds, approval="none")
    assert env.lb_port is not None
    return env.lb_port


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store, app: str,
                  tag: str) -> WorkflowHandle[Any, Any]:
    request, summary = validate_release(store, ReleaseRequest(
        app=app, env="prod", image=f"{IMAGE}:{tag}", requested_by="ana"))
    return (await start_release(temporal.client, settings, request, summary)).handle


async def within(seconds: float, work: Awaitable[T], what: str) -> T:
    try:
        return await asyncio.wait_for(work, timeout=seconds)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {seconds:.0f} s") from None


async def status_when(handle: WorkflowHandle[Any, Any], query: Any, predicate: Any,
                      seconds: float, what: str) -> Any:
    """Poll a status query until ``predicate(status)`` holds (real time, bounded); a query
    that fails (no worker answers yet, the workflow not started yet) is asked again."""
    deadline = time.monotonic() + seconds
    status = None
    while time.monotonic() < deadline:
        try:
            status = await handle.query(query, rpc_timeout=QUERY_TIMEOUT)
        except RPCError:
            status = None
        if status is not None and predicate(status):
            return status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: never within {seconds:.0f} s (last status: {status})")


def serving(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text.strip()


def versions_running(client: docker.DockerClient, app: str) -> list[str]:
    containers = client.containers.list(
        all=True, filters={"label": f"slipway.env={env_key(app, 'prod', 'local')}"})
    return sorted(container.labels["slipway.version"] for container in containers)


async def test_worker_killed_mid_train_a_new_worker_completes_it(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], images: None,
    tmp_path: Path,
) -> None:
    started_at = time.monotonic()
    ports = {app: register(store, settings, app, "gray", stable_seconds=2,
                           gray_steps=["1", "100%"]) for app in TRAIN_APPS}
    address = temporal.client.service_client.config.target_host
    old = WorkerProcess(settings, address, tmp_path / "worker-old.log")
    workers.append(old)
    old.start()
    firsts = [await release(temporal, settings, store, app, "1.0.0") for app in TRAIN_APPS]
    for handle in firsts:
        assert (await within(120, handle.result(), f"{handle.id} v1")).baseline_version == 1
    assert {serving(port) for port in ports.values()} == {"sample-app 1.0.0"}

    name = f"chaos-{SUFFIX}"
    request = train_request(store, name, [f"{app}@prod" for app in TRAIN_APPS],
                            order=",".join(TRAIN_APPS), after=[],
                            images=[f"{app}={IMAGE}:2.0.0" for app in TRAIN_APPS],
                            requested_by="ana")
    with request_loop(f"http://127.0.0.1:{ports[TRAIN_APPS[0]]}/", max_seconds=150) as outcomes:
        handle = await start_train(temporal.client, settings, request)
        await status_when(handle, TrainWorkflow.status,
                          lambda s: s.members and s.members[0].run_id, 60,
                          "the train's first member started")
        first = temporal.client.get_workflow_handle(f"release:{TRAIN_APPS[0]}:prod@local")
        # Inside the first member's stable wait, where v2 serves beside v1.
        killed_in = await kill_inside(first, old, {"watch_health"},
                                      when=lambda status: status.stage == "waiting_stable")
        killed_at = time.monotonic()
        new = WorkerProcess(settings, address, tmp_path / "worker-new.log")
        workers.append(new)
        new.start()
        outcome = await within(150, handle.result(), "the train after the kill")
        recovered = time.monotonic() - killed_at
        time.sleep(0.5)
    status = await handle.query(TrainWorkflow.status)
    print(f"\nworker killed inside {killed_in} of {first.id}; the train ended "
          f"{recovered:.1f}s later; requests: {dict(outcomes)}; test took "
          f"{time.monotonic() - started_at:.1f}s\n"
          + "\n".join(f"{e.at:%H:%M:%S.%f} {e.message}" for e in status.events))
    assert outcome.state == ReleaseState.SUCCEEDED
    assert [(m.app, m.state, m.to_version) for m in outcome.members] == [
        (app, "succeeded", 2) for app in TRAIN_APPS]
    assert {app: serving(port) for app, port in ports.items()} == {
        app: "sample-app 2.0.0" for app in TRAIN_APPS}
    assert {app: versions_running(docker_client, app) for app in TRAIN_APPS} == {
        app: ["2", "2"] for app in TRAIN_APPS}
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 2.0.0"] > 0
    with store.session() as session:
        assert session.exec(select(Train).where(Train.name == name)).one().state == (
            ReleaseState.SUCCEEDED)


async def test_worker_killed_during_a_freeze_wait_the_release_goes_out_once_lifted(
    temporal: WorkflowEnvironment, settings: Settings, store: Store,
    docker_client: docker.DockerClient, workers: list[WorkerProcess], images: None,
    tmp_path: Path,
) -> None:
    started_at = time.monotonic()
    port = register(store, settings, FROZEN_APP, "recreate")
    address = temporal.client.service_client.config.target_host
    old = WorkerProcess(settings, address, tmp_path / "worker-old.log")
    workers.append(old)
    old.start()
    rule, _ = await add(store, temporal.client, make_rule(
        RuleKind.FREEZE, "prod@local", f"chaos {SUFFIX}", start="now", duration="2h"), "sre")
    handle = await release(temporal, settings, store, FROZEN_APP, "2.0.0")
    frozen: ReleaseStatus = await status_when(
        handle, ReleaseWorkflow.status, lambda s: s.stage == "frozen", 60, "the release frozen")
    assert f"chaos {SUFFIX}" in frozen.frozen
    old.kill()  # kill -9 while the release waits on a timer in the freeze
    assert versions_running(docker_client, FROZEN_APP) == []
    new = WorkerProcess(settings, address, tmp_path / "worker-new.log")
    workers.append(new)
    new.start()
    # The new worker has the release (a query needs a worker to replay it): still frozen.
    await status_when(handle, ReleaseWorkflow.status, lambda s: s.stage == "frozen", 60,
                      "the new worker answering for the frozen release")
    lifted_at = time.monotonic()
    assert rule.id is not None
    _, told = await lift(store, temporal.client, rule.id, "sre")
    assert handle.id in told
    outcome = await within(90, handle.result(), "the release after the freeze was lifted")
    print(f"\nthe release went out {time.monotonic() - lifted_at:.1f}s after the freeze was "
          f"lifted; test took {time.monotonic() - started_at:.1f}s")
    assert outcome.baseline_version == 1
    assert serving(port) == "sample-app 2.0.0"
    assert versions_running(docker_client, FROZEN_APP) == ["1", "1"]
