"""Record the golden histories that ``tests/workflows/test_replay.py`` replays.

Run from the repository root after an intended change to a workflow's command sequence
(and only then: see docs/operations.md, "Shipping a workflow change")::

    PYTHONPATH=$PWD python -m tests.histories.record [STORY ...]

Each story runs on the time-skipping test server with the fake activities of the unit tests
and is written as ``<name>.json`` (``fetch_history().to_json()``) beside this file. Before
changing a workflow, keep the histories of the release in production: copy them into a folder
named by its commit (as ``0abc4ba/``), which the replay test replays too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from schemas.enums import Strategy
from schemas.lanes import DeleteInput, LanePushInput, LaneSpec, LaneStage, lane_workflow_id
from schemas.models import ControlInput, NotifyInput, ReleaseRequest
from schemas.trains import TrainMember, TrainRequest, chained
from tests.conftest import _start_env
from tests.support.workers import workers
from tests.workflows.fakes import FakeWorld, signed
from tests.workflows.lane_fakes import LaneWorld
from workflows.janitor import JanitorWorkflow
from workflows.release import ReleaseWorkflow
from workflows.swimlane import SwimlaneWorkflow
from workflows.train import TrainWorkflow

HERE = Path(__file__).resolve().parent
REQUEST = ReleaseRequest(app="shop", env="prod@local", requested_by="ana")


async def _release(env: WorkflowEnvironment, world: FakeWorld) -> WorkflowHandle[Any, Any]:
    queue = f"golden-{uuid.uuid4()}"
    async with workers(env.client, queue, [ReleaseWorkflow], world.activities()):
        handle = await env.client.start_workflow(ReleaseWorkflow.run, REQUEST,
                                                 id=f"release:shop:{uuid.uuid4()}",
                                                 task_queue=queue)
        with contextlib.suppress(WorkflowFailureError):  # a rolled-back story is one too
            await handle.result()
    return handle


async def release_gray(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A gray release: three steps with stable waits, the old version shut at the end."""
    return await _release(env, FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY,
                                         replicas=4, stable_seconds=20))


async def release_fast_rollback(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A fast rollback (switch) from v2 to baseline 1's image: v3 at full strength, v2
    drained; the outcome reported (the ``outcome`` Update answered), then v2 removed."""
    world = FakeWorld(current_version=2, versions=[2], strategy=Strategy.GRAY, replicas=2,
                      stable_seconds=20, fast_rollback=True)
    queue = f"golden-{uuid.uuid4()}"
    async with workers(env.client, queue, [ReleaseWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app="shop", env="prod@local", rollback_to=1,
                                                requested_by="ana"),
            id=f"release:shop:{uuid.uuid4()}", task_queue=queue)
        await handle.execute_update(ReleaseWorkflow.outcome)
        await handle.result()
    return handle


async def release_rolled_back(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A recreate release whose new version never gets healthy: the undo stack runs."""
    return await _release(env, FakeWorld(current_version=1, versions=[1], fail_ready_for=2))


async def release_undo_failed(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A recreate release whose new version never gets healthy and whose removal fails for
    good: an undo step fails, the release ends failed with an alert."""
    return await _release(env, FakeWorld(current_version=1, versions=[1], fail_ready_for=2,
                                         fail_remove_for=2))


async def train(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A train of shop then cart: shop goes out, cart fails, shop is rolled back (members
    and the joint abort's rollback run as child releases)."""
    world = FakeWorld(current_version=1, versions=[1], unhealthy_apps={"cart"})
    apps = ["shop", "cart"]
    after = chained(apps)
    request = TrainRequest(name=f"golden-{uuid.uuid4().hex[:6]}", requested_by="ana",
                           members=[TrainMember(app=app, env="prod", image=f"slipway/{app}:v2",
                                                after=after[app]) for app in apps])
    queue = f"golden-{uuid.uuid4()}"
    async with workers(env.client, queue, [TrainWorkflow, ReleaseWorkflow], world.activities()):
        handle = await env.client.start_workflow(TrainWorkflow.run, request,
                                                 id=f"train:{request.name}", task_queue=queue)
        with contextlib.suppress(WorkflowFailureError):  # the joint abort fails the train
            await handle.result()
    return handle


async def train_rollback_waits(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A train of shop then cart: shop goes out; a break-glass release of shop starts (it
    waits for approval); cart is aborted; the joint abort cannot start shop's rollback, waits
    on a timer, the blocker is rejected, and shop's rollback runs: the train closes."""
    world = FakeWorld(current_version=1, versions=[1], block_ready_apps={"cart"})
    apps = ["shop", "cart"]
    after = chained(apps)
    request = TrainRequest(name=f"golden-{uuid.uuid4().hex[:6]}", requested_by="ana",
                           members=[TrainMember(app=app, env="prod", image=f"slipway/{app}:v2",
                                                after=after[app]) for app in apps])
    queue = f"golden-{uuid.uuid4()}"
    try:
        async with workers(env.client, queue, [TrainWorkflow, ReleaseWorkflow],
                           world.activities()):
            handle = await env.client.start_workflow(TrainWorkflow.run, request,
                                                     id=f"train:{request.name}", task_queue=queue)
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)  # cart is held
            blocker = await env.client.start_workflow(
                ReleaseWorkflow.run, ReleaseRequest(app="shop", env="prod", image="hotfix:1",
                                                    requested_by="ana", break_glass="INC-1"),
                id="release:shop:prod@local", task_queue=queue)
            while (await blocker.query(ReleaseWorkflow.status)).awaiting != "approval":
                await asyncio.sleep(0.05)
            await env.client.get_workflow_handle("release:cart:prod@local").execute_update(
                ReleaseWorkflow.abort, ControlInput(user="sre", reason="error rate"))
            while not (await handle.query(TrainWorkflow.status)).members[0].rollback.startswith(
                    "waiting"):
                await asyncio.sleep(0.05)
            await blocker.execute_update(ReleaseWorkflow.reject, signed(blocker, "lead", "reject"))
            with contextlib.suppress(WorkflowFailureError):  # the joint abort fails the train
                await asyncio.wait_for(handle.result(), timeout=60)
    finally:
        world.unblock.set()
    return handle


async def release_approved(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A release that waits for approval; lead approves with a signed proof."""
    world = FakeWorld(current_version=1, versions=[1], approval_required=True)
    queue = f"golden-{uuid.uuid4()}"
    async with workers(env.client, queue, [ReleaseWorkflow], world.activities()):
        handle = await env.client.start_workflow(ReleaseWorkflow.run, REQUEST,
                                                 id=f"release:shop:{uuid.uuid4()}",
                                                 task_queue=queue)
        while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
            await asyncio.sleep(0.05)
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        await handle.result()
    return handle


async def swimlane(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A lane created, pushed to (build + deploy), then deleted."""
    world = LaneWorld()
    world.release.set()
    queue = f"golden-{uuid.uuid4()}"
    name = f"golden-{uuid.uuid4().hex[:6]}"
    async with workers(env.client, queue, [SwimlaneWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            SwimlaneWorkflow.run, LaneSpec(name=name, apps=["shop"]),
            id=lane_workflow_id(name), task_queue=queue)
        while (await handle.query(SwimlaneWorkflow.status)).stage != LaneStage.ACTIVE:
            await asyncio.sleep(0.05)
        await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app="shop", source="/src/shop", sha="0123456789abcdef", user="ana"))
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"))
        await handle.result()
    return handle


async def janitor(env: WorkflowEnvironment) -> WorkflowHandle[Any, Any]:
    """A sweep that removed an orphan and found a lost lane."""

    @activity.defn(name="sweep_lane_orphans")
    async def sweep_lane_orphans() -> dict[str, list[str]]:
        return {"old-lane": ["container shop@old-lane"]}

    @activity.defn(name="report_lost_lanes")
    async def report_lost_lanes() -> list[str]:
        return ["lost-lane"]

    @activity.defn(name="notify")
    async def notify(data: NotifyInput) -> None:
        return None

    queue = f"golden-{uuid.uuid4()}"
    async with workers(env.client, queue, [JanitorWorkflow],
                       [sweep_lane_orphans, report_lost_lanes, notify]):
        handle = await env.client.start_workflow(JanitorWorkflow.run,
                                                 id=f"janitor-{uuid.uuid4()}", task_queue=queue)
        await handle.result()
    return handle


STORIES: dict[str, Callable[[WorkflowEnvironment], Awaitable[WorkflowHandle[Any, Any]]]] = {
    "release_gray": release_gray,
    "release_rolled_back": release_rolled_back,
    "release_fast_rollback": release_fast_rollback,
    "release_approved": release_approved,
    "release_undo_failed": release_undo_failed,
    "train": train,
    "train_rollback_waits": train_rollback_waits,
    "swimlane": swimlane,
    "janitor": janitor,
}


async def record(directory: Path = HERE, names: list[str] | None = None) -> list[Path]:
    """Run every story (or those named) and write its history; return the files written."""
    env = await _start_env()
    written: list[Path] = []
    try:
        for name, story in STORIES.items():
            if names and name not in names:
                continue
            handle = await story(env)
            history = await handle.fetch_history()
            path = directory / f"{name}.json"
            path.write_text(history.to_json())
            written.append(path)
    finally:
        await env.shutdown()
    return written


if __name__ == "__main__":
    for path in asyncio.run(record(names=sys.argv[1:] or None)):
        print(f"wrote {path}")
