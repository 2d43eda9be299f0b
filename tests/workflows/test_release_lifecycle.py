"""Approval, grayscale, controls and rollback of ReleaseWorkflow on the time-skipping server."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from schemas.enums import ReleaseState, Strategy
from schemas.models import ControlInput, ReleaseRequest
from tests.workflows.fakes import FakeWorld, signed, start, wait_for, worker
from workflows.release import ReleaseWorkflow

REQUEST = ReleaseRequest(app="shop", env="prod@local", requested_by="ana")


async def refusal(handle: WorkflowHandle[Any, Any], update: Any) -> str:
    """The validator's reason for refusing ``update``."""
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(update, ControlInput(user="sre"))
    return str(refused.value.cause)


def approval_world() -> FakeWorld:
    return FakeWorld(current_version=1, versions=[1], approval_required=True)


def gray_world(**overrides: object) -> FakeWorld:
    values: dict[str, object] = dict(current_version=1, versions=[1], strategy=Strategy.GRAY,
                                     replicas=4, stable_seconds=60)
    values.update(overrides)
    return FakeWorld(**values)  # type: ignore[arg-type]


async def test_approved_release_rolls_out(env: WorkflowEnvironment) -> None:
    world = approval_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.awaiting == "approval")
        assert status.approvers == ["lead", "ana"]
        assert "start v2" not in " ".join(world.calls)  # nothing runs before approval
        answer = await handle.execute_update(ReleaseWorkflow.approve,
                                             signed(handle, "lead", comment="go"))
        assert "lead approved shop@prod@local v2" in answer
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.approvals == ["awaiting", "lead"]
    assert world.finished[-1].approved_by == "lead"


async def test_rejected_release_ends_rejected_without_touching_the_environment(
    env: WorkflowEnvironment,
) -> None:
    world = approval_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        await handle.execute_update(ReleaseWorkflow.reject,
                                    signed(handle, "lead", "reject",
                                           comment="not on a Friday"))
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert ("release rejected: rejected by lead (via cli, token lead): not on a Friday"
            in str(failure.value.cause))
    assert world.finished[-1].state == ReleaseState.REJECTED
    assert not any(call.startswith(("start", "drain", "stop")) for call in world.calls)


async def test_unanswered_approval_expires(env: WorkflowEnvironment) -> None:
    world = approval_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()  # the time-skipping server runs the 24 h timer out
        status = await handle.query(ReleaseWorkflow.status)
    assert "approval_expired" in str(failure.value.cause)
    # An hour before it expires, the approvers are reminded.
    reminder = [title for title in world.notices if title.startswith("reminder")]
    assert reminder and reminder[0].startswith("reminder: approval of shop@prod@local v2 "
                                               "expires at")
    reminded, expired = [e.at for e in status.events
                         if e.message.startswith(("reminded lead, ana", "approval_expired"))]
    assert round((expired - reminded).total_seconds()) == 3600
    assert world.finished[-1].state == ReleaseState.APPROVAL_EXPIRED


@pytest.mark.parametrize(("user", "reason"), [
    ("ana", "four eyes: ana requested this release and cannot approve it"),
    ("mallory", "mallory is not an approver of shop (approvers: lead, ana)"),
])
async def test_approve_validator_refuses(env: WorkflowEnvironment, user: str,
                                         reason: str) -> None:
    world = approval_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ReleaseWorkflow.approve, signed(handle, user))
        assert reason in str(refused.value.cause)
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval"  # a refused update changes nothing
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED


async def test_gray_release_steps_with_wait_for_stable(env: WorkflowEnvironment) -> None:
    world = gray_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        outcome = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    steps = [c for c in world.calls if c.startswith(("start", "drain", "remove"))]
    assert steps == [
        "start v2 sha256:new x1",                                    # canary beside 4× v1
        "start v2 sha256:new x2", "drain v1 keep 2", "start v1 sha256:v1 x2",
        "start v2 sha256:new x4", "drain v1", "remove v1",           # stable, then v1 shut
    ]
    assert world.health_checks == 3 * 6  # 60 s stable per step, probed every 10 s
    assert (status.step, status.steps) == (3, 3)
    assert [(v.version, v.desired, v.traffic_percent) for v in status.versions] == [
        (2, 4, 100.0), (1, 0, 0.0)]


async def test_unhealthy_canary_is_rolled_back_and_v1_untouched(
    env: WorkflowEnvironment,
) -> None:
    world = gray_world(unhealthy_version=2)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "v2 unhealthy while waiting for stable: v2-0 failed /healthz" in str(
        failure.value.cause)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert not any(call.startswith("drain v1") for call in world.calls)
    assert world.calls[-2:] == ["unroute v2", "remove v2"]


async def test_abort_at_step_two_restores_v1_then_removes_v2(env: WorkflowEnvironment) -> None:
    world = gray_world(stable_seconds=3600, hold_stable=True)
    runner, queue = worker(env, world)
    with env.auto_time_skipping_disabled():  # hold the release inside step 2's stable wait
        async with runner:
            handle = await start(env, world, REQUEST, queue)
            await wait_for(handle, lambda s: s.step == 1 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.promote, ControlInput(user="sre"))
            await wait_for(handle, lambda s: s.step == 2 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.abort,
                                        ControlInput(user="sre", reason="error rate"))
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
    assert "aborted: sre: error rate" in str(failure.value.cause)
    undo = world.calls[world.calls.index("start v1 sha256:v1 x2") + 1:]
    assert undo == ["start v1 sha256:v1 x4", "ready v1", "route v1-0,v1-1,v1-2,v1-3",
                    "unroute v2", "remove v2"]
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK


async def test_pause_holds_the_release_until_resume(env: WorkflowEnvironment) -> None:
    world = gray_world(stable_seconds=3600, hold_stable=True)
    runner, queue = worker(env, world)
    async with runner:
        with env.auto_time_skipping_disabled():  # hold the release inside step 1's stable wait
            handle = await start(env, world, REQUEST, queue)
            await wait_for(handle, lambda s: s.step == 1 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.pause, ControlInput(user="sre"))
            # The pause takes effect once the stable watch has stopped: poll for it, bounded.
            status = await wait_for(handle, lambda s: s.stage == "paused")
            assert status.paused and status.step == 1
            # Nothing holds it back but the pause now: a stable window would end at once.
            world.hold_stable = False
            calls_while_paused = list(world.calls)
            description = await handle.describe()
            assert not description.raw_description.pending_activities  # watch stopped
            assert "already paused" in await refusal(handle, ReleaseWorkflow.pause)
            status = await handle.query(ReleaseWorkflow.status)
            assert (status.stage, status.step) == ("paused", 1)
            assert world.calls == calls_while_paused
            await handle.execute_update(ReleaseWorkflow.resume, ControlInput(user="sre"))
        outcome = await handle.result()  # time skipping again: the waits run out
        history = await handle.fetch_history()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    # From the pause to the resume no activity was scheduled (the history, not a race with
    # the worker: after the resume the rollout goes on at once); then it went on with step 2.
    updates = [(i, e.workflow_execution_update_accepted_event_attributes
                .accepted_request.input.name)
               for i, e in enumerate(history.events)
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    [paused_at] = [i for i, name in updates if name == "pause"]
    [resumed_at] = [i for i, name in updates if name == "resume"]
    assert not [e for e in history.events[paused_at:resumed_at]
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert world.calls[:len(calls_while_paused)] == calls_while_paused
    assert world.calls[len(calls_while_paused)] == "start v2 sha256:new x2"
    messages = [e.message for e in status.events]
    held = messages.index("paused: waiting for resume")
    assert messages[held + 1:held + 3] == ["waiting_stable: resumed",
                                           "shifting: step 2/3: v2×2, v1×2"]


async def test_gate_waits_for_promote(env: WorkflowEnvironment) -> None:
    world = gray_world(gray_steps=["1", "gate", "100%"], stable_seconds=0)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.awaiting == "promote")
        assert status.step == 2
        assert world.calls[-1] == "route v2-0"
        assert "not paused" in await refusal(handle, ReleaseWorkflow.resume)
        await handle.execute_update(ReleaseWorkflow.promote, ControlInput(user="sre"))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    assert "start v2 sha256:new x4" in world.calls


async def test_promote_is_refused_outside_a_gate(env: WorkflowEnvironment) -> None:
    world = approval_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        assert "nothing to promote" in await refusal(handle, ReleaseWorkflow.promote)
        assert "not rolling out" in await refusal(handle, ReleaseWorkflow.pause)
        await handle.execute_update(ReleaseWorkflow.reject, signed(handle, "lead", "reject"))


async def test_promote_full_skips_remaining_steps(env: WorkflowEnvironment) -> None:
    world = gray_world(stable_seconds=3600, hold_stable=True)
    runner, queue = worker(env, world)
    async with runner:
        with env.auto_time_skipping_disabled():
            handle = await start(env, world, REQUEST, queue)
            await wait_for(handle, lambda s: s.step == 1 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.promote_full, ControlInput(user="sre"))
            outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert "start v2 sha256:new x2" not in world.calls
    assert world.calls[-3:] == ["route v2-0,v2-1,v2-2,v2-3", "drain v1", "remove v1"]


async def test_rollback_runs_the_older_baseline_by_digest(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=3, versions=[3])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, ReleaseRequest(app="shop", env="prod@local",
                                                        rollback_to=1), queue)
        outcome = await handle.result()
    assert outcome.baseline_version == 4  # a rollback rolls forward as N+1
    assert not any(call.startswith(("build", "resolve")) for call in world.calls)
    assert "start v4 sha256:v1 x2" in world.calls
    assert world.finished[-1].image is not None
    assert world.finished[-1].image.digest == "sha256:v1"
