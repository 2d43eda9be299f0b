"""ReleaseWorkflow orchestration with fake activities on the time-skipping server."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from schemas.enums import ReleaseState, Strategy
from schemas.models import (
    BuildInput,
    DrainInput,
    EnsureFrontendInput,
    FinishReleaseInput,
    FinishReleaseResult,
    ImageSpec,
    Instance,
    ListVersionsInput,
    NotifyInput,
    PrepareReleaseInput,
    RecordBuildInput,
    ReleasePlan,
    ReleaseRequest,
    ResolveImageInput,
    StartVersionInput,
    TrafficInput,
    VersionRef,
    WaitReadyInput,
)
from workflows.release import ReleaseWorkflow


@dataclass
class FakeWorld:
    """Activities that record what they were asked to do, with switchable failures."""

    current_version: int = 0
    versions: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    finished: list[FinishReleaseInput] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    fail_ready_for: int | None = None
    block_ready_for: int | None = None
    fail_undo: bool = False
    ready_started: asyncio.Event = field(default_factory=asyncio.Event)

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name="prepare_release")
        async def prepare_release(data: PrepareReleaseInput) -> ReleasePlan:
            world.calls.append("prepare")
            current = world.current_version
            return ReleasePlan(
                release_id=7, app=data.request.app, env=data.request.env, env_key="shop-prod",
                lb_port=18080, cluster="local", strategy=Strategy.RECREATE, replicas=2,
                ports=[8080], source="/src/shop", from_version=current,
                to_version=current + 1,
                current=ImageSpec(image="slipway/shop:v1", digest="sha256:v1") if current else None,
                current_replicas=2 if current else 0,
                target=ImageSpec(image=data.request.image) if data.request.image else None,
            )

        @activity.defn(name="build_image")
        async def build_image(data: BuildInput) -> ImageSpec:
            world.calls.append(f"build {data.version_label}")
            return ImageSpec(image=f"slipway/{data.app}:{data.version_label}", digest="sha256:new")

        @activity.defn(name="record_build")
        async def record_build(data: RecordBuildInput) -> int:
            world.calls.append("record_build")
            return 1

        @activity.defn(name="resolve_image")
        async def resolve_image(data: ResolveImageInput) -> ImageSpec:
            world.calls.append(f"resolve {data.image}")
            return ImageSpec(image=data.image, digest="sha256:given")

        @activity.defn(name="ensure_frontend")
        async def ensure_frontend(data: EnsureFrontendInput) -> None:
            world.calls.append(f"frontend {data.lb_port}")

        @activity.defn(name="list_versions")
        async def list_versions(data: ListVersionsInput) -> list[int]:
            return list(world.versions)

        @activity.defn(name="drain")
        async def drain(data: DrainInput) -> None:
            world.calls.append(f"drain v{data.version}")

        @activity.defn(name="remove_from_lb")
        async def remove_from_lb(data: DrainInput) -> None:
            world.calls.append(f"unroute v{data.version}")

        @activity.defn(name="add_to_lb")
        async def add_to_lb(data: TrafficInput) -> None:
            if world.fail_undo and data.instances[0].version == world.current_version:
                raise ApplicationError("haproxy socket gone", non_retryable=True)
            world.calls.append("route " + ",".join(i.name for i in data.instances))

        @activity.defn(name="stop_version")
        async def stop_version(data: VersionRef) -> None:
            world.calls.append(f"stop v{data.version}")

        @activity.defn(name="remove_version")
        async def remove_version(data: VersionRef) -> None:
            world.calls.append(f"remove v{data.version}")

        @activity.defn(name="start_version")
        async def start_version(data: StartVersionInput) -> None:
            world.calls.append(f"start v{data.version.version} {data.image} x{data.replicas}")

        @activity.defn(name="wait_ready")
        async def wait_ready(data: WaitReadyInput) -> list[Instance]:
            version = data.version.version
            if version == world.block_ready_for:
                world.ready_started.set()
                await asyncio.sleep(3600)  # until the workflow cancels us
            if version == world.fail_ready_for:
                raise ApplicationError("v2-0 exited: boom", type="NotReadyError",
                                       non_retryable=True)
            world.calls.append(f"ready v{version}")
            return [Instance(name=f"v{version}-{i}", version=version, address="127.0.0.1",
                             port=30000 + i) for i in range(data.replicas)]

        @activity.defn(name="finish_release")
        async def finish_release(data: FinishReleaseInput) -> FinishReleaseResult:
            world.finished.append(data)
            ok = data.state == ReleaseState.SUCCEEDED
            return FinishReleaseResult(baseline_version=world.current_version + 1 if ok else None)

        @activity.defn(name="notify")
        async def notify(data: NotifyInput) -> None:
            world.notices.append(data.title)

        return [prepare_release, build_image, record_build, resolve_image, ensure_frontend,
                list_versions, drain, remove_from_lb, add_to_lb, stop_version, remove_version,
                start_version, wait_ready, finish_release, notify]


async def run_release(env: WorkflowEnvironment, world: FakeWorld, request: ReleaseRequest,
                      cancel_when_blocked: bool = False) -> Any:
    queue = f"q-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[ReleaseWorkflow],
                      activities=world.activities()):
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, request, id=f"release:{request.app}:{uuid.uuid4()}",
            task_queue=queue,
        )
        if cancel_when_blocked:
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)
            await handle.cancel()
        outcome = await handle.result()
        # Queries need a worker: ask for the final status before it stops.
        return await handle.query(ReleaseWorkflow.status), outcome


async def test_first_release_builds_and_writes_baseline_1(env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    _, outcome = await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert outcome.state == ReleaseState.SUCCEEDED
    assert outcome.baseline_version == 1
    assert world.calls == [
        "prepare", "build v1", "record_build", "frontend 18080",
        "start v1 sha256:new x2", "ready v1", "route v1-0,v1-1",
    ]
    assert world.finished[-1].state == ReleaseState.SUCCEEDED
    assert world.finished[-1].image == ImageSpec(image="slipway/shop:v1", digest="sha256:new")


async def test_recreate_drains_and_stops_old_before_starting_new(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1])
    status, outcome = await run_release(
        env, world, ReleaseRequest(app="shop", env="prod@local", image="127.0.0.1:5000/shop:2")
    )
    assert outcome.baseline_version == 2
    assert world.calls[1:] == [
        "resolve 127.0.0.1:5000/shop:2", "frontend 18080", "drain v1", "stop v1",
        "start v2 127.0.0.1:5000/shop@sha256:given x2", "ready v2", "route v2-0,v2-1",
        "remove v1",
    ]
    assert status.stage == "succeeded"
    assert [e.message.split(":")[0] for e in status.events][:2] == ["resolving", "draining"]


async def test_unhealthy_new_version_is_rolled_back_to_the_baseline(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2)
    with pytest.raises(WorkflowFailureError) as failure:
        await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert "release rolled_back: v2-0 exited: boom" in str(failure.value.cause)
    undo = world.calls[world.calls.index("start v2 sha256:new x2") + 1:]
    # Newest first: v2 out of rotation and removed, then v1 started from its digest again.
    assert undo == ["unroute v2", "remove v2", "start v1 sha256:v1 x2", "ready v1",
                    "route v1-0,v1-1"]
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "boom" in world.finished[-1].error


async def test_cancelled_release_undoes_its_steps(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], block_ready_for=2)
    with pytest.raises(WorkflowFailureError):
        await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"),
                          cancel_when_blocked=True)
    assert world.calls[-3:] == ["start v1 sha256:v1 x2", "ready v1", "route v1-0,v1-1"]
    assert "remove v2" in world.calls
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert world.finished[-1].error == "cancelled"


async def test_failed_undo_ends_failed_with_an_alert(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2, fail_undo=True)
    with pytest.raises(WorkflowFailureError) as failure:
        await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert "release failed" in str(failure.value.cause)
    assert world.finished[-1].state == ReleaseState.FAILED
    assert any(title.startswith("ALERT: ") for title in world.notices)
