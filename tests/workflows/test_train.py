"""TrainWorkflow on the time-skipping server: order, one approval, joint abort."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.client import WorkflowExecution as Execution
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from schemas.enums import ReleaseState, Strategy
from schemas.models import ControlInput, ReleaseRequest
from schemas.trains import TrainMember, TrainRequest, TrainStatus, chained
from starter.service.freezes import declare_incident
from tests.workflows.fakes import FakeWorld, signed, wait_for, worker
from workflows import search
from workflows.release import ReleaseWorkflow
from workflows.train import TrainWorkflow


def train(apps: list[str], ordered: bool = True) -> TrainRequest:
    after = chained(apps) if ordered else {app: [] for app in apps}
    return TrainRequest(name=f"t-{uuid.uuid4().hex[:6]}", requested_by="ana", members=[
        TrainMember(app=app, env="prod", image=f"slipway/{app}:v2", after=after[app])
        for app in apps])


async def start_train(env: WorkflowEnvironment, request: TrainRequest,
                      queue: str) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(TrainWorkflow.run, request,
                                           id=f"train:{request.name}", task_queue=queue)


async def test_a_failing_member_rolls_back_every_member_that_went_out_newest_first(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], unhealthy_apps={"cart"})
    request = train(["shop", "cart", "mail"])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start_train(env, request, queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        status: TrainStatus = await handle.query(TrainWorkflow.status)
    assert f"train {request.name} rolled_back: cart@prod@local failed" in str(
        failure.value.cause)
    states = {m.app: (m.state, m.rollback) for m in status.members}
    assert states == {"shop": ("rolled_back", "back on v1 (baseline v2)"),
                      "cart": ("rolled_back", ""), "mail": ("waiting", "")}
    # shop went out, cart failed and undid itself, mail never started, shop went back.
    assert [str(f.state) for f in world.finished] == ["succeeded", "rolled_back", "succeeded"]
    starts = [call for call in world.calls if call.startswith("start")]
    # shop v2, cart v2, cart's undo (recreate: v1 again), shop's rollback (v1 as v2)
    assert len(starts) == 4 and starts[-1] == "start v2 sha256:v1 x2"
    assert not any("mail" in call for call in world.calls)
    closed = world.trains[-1]
    assert closed.state == ReleaseState.ROLLED_BACK and "cart" in closed.error


async def test_one_approval_covers_the_train_and_the_requester_cannot_give_it(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], approval_required=True)
    request = train(["shop", "cart"], ordered=False)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start_train(env, request, queue)
        for _ in range(200):
            status = await handle.query(TrainWorkflow.status)
            if status.awaiting == "approval":
                break
        assert status.awaiting == "approval" and not world.finished
        with pytest.raises(WorkflowUpdateFailedError) as own:
            await handle.execute_update(TrainWorkflow.approve, signed(handle, "ana"))
        assert "four eyes: ana requested this release" in str(own.value.cause)
        answer = await handle.execute_update(TrainWorkflow.approve, signed(handle, "lead"))
        assert answer == f"lead approved train {request.name}"
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert {(m.app, m.state, m.to_version) for m in outcome.members} == {
        ("shop", "succeeded", 2), ("cart", "succeeded", 2)}
    assert world.approvals == []  # the members did not ask again
    assert world.trains[-1].approved_by == "lead"


async def test_parallel_members_the_survivor_is_cancelled_and_rolls_itself_back(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], unhealthy_apps={"cart"},
                      block_ready_apps={"shop"})
    request = train(["shop", "cart"], ordered=False)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start_train(env, request, queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status: TrainStatus = await handle.query(TrainWorkflow.status)
    assert {m.app: m.state for m in status.members} == {"shop": "rolled_back",
                                                        "cart": "rolled_back"}
    assert all(str(f.state) == "rolled_back" for f in world.finished)
    assert world.trains[-1].state == ReleaseState.ROLLED_BACK


async def train_status(handle: WorkflowHandle[Any, Any], predicate: Any,
                       seconds: float = 30) -> TrainStatus:
    """Poll the train's status query until ``predicate(status)`` holds (real time, bounded)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status: TrainStatus = await handle.query(TrainWorkflow.status)
        if predicate(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"train status never matched: {status}")
        await asyncio.sleep(0.05)


async def test_a_rollback_blocked_by_a_running_release_waits_for_it_and_the_train_closes(
    env: WorkflowEnvironment,
) -> None:
    """The joint abort cannot start shop's rollback while another release of shop@prod runs
    (its id is taken): it waits, says so, and rolls shop back once that release has ended."""
    suffix = uuid.uuid4().hex[:6]
    shop, cart = f"shop{suffix}", f"cart{suffix}"
    world = FakeWorld(current_version=1, versions=[1], block_ready_apps={cart})
    request = train([shop, cart])
    runner, queue = worker(env, world)
    try:
        async with runner:
            handle = await start_train(env, request, queue)
            status = await train_status(handle, lambda s: [m.state for m in s.members] == [
                "succeeded", "releasing"])
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)  # cart is held
            # Someone releases shop by hand meanwhile (break glass: it waits for approval).
            blocker = await env.client.start_workflow(
                ReleaseWorkflow.run, ReleaseRequest(app=shop, env="prod", image="hotfix:1",
                                                    requested_by="ana", break_glass="INC-1"),
                id=status.members[0].workflow_id, task_queue=queue)
            await wait_for(blocker, lambda s: s.awaiting == "approval")
            # cart is aborted: the joint abort must roll shop back, and cannot start it.
            cart_release = env.client.get_workflow_handle(status.members[1].workflow_id)
            await cart_release.execute_update(ReleaseWorkflow.abort,
                                              ControlInput(user="sre", reason="error rate"))
            waiting = f"waiting: release:{shop}:prod@local running"
            status = await train_status(handle, lambda s: s.members[0].rollback == waiting)
            assert status.stage == "rolling_back" and not world.trains
            description = await handle.describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
            # The blocker ends (rejected); the next try starts shop's rollback.
            await blocker.execute_update(ReleaseWorkflow.reject,
                                         signed(blocker, "lead", "reject", "not now"))
            with pytest.raises(WorkflowFailureError) as failure:
                await asyncio.wait_for(handle.result(), timeout=60)
            status = await handle.query(TrainWorkflow.status)
    finally:
        world.unblock.set()
    assert f"train {request.name} rolled_back: {cart}@prod@local failed" in str(
        failure.value.cause)
    assert [(m.state, m.rollback) for m in status.members] == [
        ("rolled_back", "back on v1 (baseline v2)"), ("rolled_back", "")]
    messages = [event.message for event in status.events]
    assert any(waiting in message for message in messages)
    assert any("ended, rollback started after" in message for message in messages)
    # shop v2, cart v2 (aborted, undone), shop's rollback: v1 runs again as shop's v2.
    assert [call for call in world.calls if call.startswith("start")][-1] == (
        "start v2 sha256:v1 x2")
    [closed] = world.trains
    assert closed.state == ReleaseState.ROLLED_BACK and cart in closed.error
    assert {(m.app, m.rollback) for m in closed.members} >= {
        (shop, "back on v1 (baseline v2)")}


class Visibility:
    """A client whose ``list_workflows`` lists the given workflows while they run, each as
    the server describes it (its real search attributes): the time-skipping server has no
    visibility queries (ListWorkflowExecutions is unimplemented there)."""

    def __init__(self, client: Client, workflow_ids: list[str]) -> None:
        self.client = client
        self.workflow_ids = workflow_ids

    async def list_workflows(self, query: str = "") -> AsyncIterator[Execution]:
        for workflow_id in self.workflow_ids:
            described = await self.client.get_workflow_handle(workflow_id).describe()
            if described.status == WorkflowExecutionStatus.RUNNING:
                yield described

    def get_workflow_handle(self, workflow_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(workflow_id)


async def test_members_carry_app_and_env_so_freeze_now_holds_them(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:6]
    apps = [f"shop{suffix}", f"cart{suffix}"]
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=60, hold_stable=True)
    request = train(apps, ordered=False)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start_train(env, request, queue)
        for _ in range(600):  # real time, bounded: until both children have started
            status = await handle.query(TrainWorkflow.status)
            if status.members and all(member.run_id for member in status.members):
                break
            await asyncio.sleep(0.05)
        children = [env.client.get_workflow_handle(member.workflow_id)
                    for member in status.members]
        assert [member.app for member in status.members] == apps
        for child in children:
            await wait_for(child, lambda s: s.stage == "waiting_stable" and s.step == 1)
        for app, child in zip(apps, children, strict=True):
            attributes = (await child.describe()).typed_search_attributes
            assert attributes.get(search.APP) == app
            assert attributes.get(search.ENV) == "prod@local"
        # `slipway freeze now prod`: the members are found by their Env and told.
        store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
        visibility: Any = Visibility(env.client, [child.id for child in children])
        rule, told = await declare_incident(store, visibility, "prod", "db failover", "sre")
        assert sorted(told) == sorted(child.id for child in children)
        world.freezes.append(rule)
        world.hold_stable = False
        for child in children:  # held before their next step
            status = await wait_for(child, lambda s: s.stage == "frozen")
            assert status.step == 1 and "db failover" in status.frozen
        world.freezes.clear()
        for child in children:
            await child.signal(ReleaseWorkflow.thaw)
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
