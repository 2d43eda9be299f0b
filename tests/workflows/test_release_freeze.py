"""Freezes, deploy windows and break glass in ReleaseWorkflow, on the time-skipping server."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from schemas.analysis import AnalysisPolicy, Metric
from schemas.enums import ReleaseState, Strategy
from schemas.freezes import FreezeNotice, FreezeRule, RuleKind
from schemas.models import ControlInput, ReleaseRequest
from tests.workflows.fakes import FakeWorld, run_release, signed, start, wait_for, worker
from workflows.release import ReleaseWorkflow

REQUEST = ReleaseRequest(app="shop", env="prod@local", image="slipway/shop:v2",
                         requested_by="ana")


async def test_a_release_into_a_freeze_waits_and_starts_when_it_ends(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    ends = now + timedelta(hours=3)
    world = FakeWorld(current_version=1, versions=[1], freezes=[FreezeRule(
        id=4, scope="prod", reason="promotion weekend", starts_at=now - timedelta(hours=1),
        ends_at=ends, created_by="sre")])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.stage == "frozen")
        assert status.frozen == "freeze #4 of prod by sre: promotion weekend"
        assert status.frozen_until == ends
        assert not any(call.startswith("start") for call in world.calls)
        outcome = await handle.result()  # the server skips the three hours
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.scheduled["start v2"] >= ends
    assert status.frozen == "" and status.frozen_until is None
    assert any("prod@local is open: going on" in e.message for e in status.events)


async def test_outside_the_deploy_windows_it_waits_for_the_next_window(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    opens = now.replace(microsecond=0) + timedelta(hours=5)  # RRULEs count whole seconds
    window = FreezeRule(kind=RuleKind.WINDOW, scope="prod@local", starts_at=opens,
                        rrule="FREQ=DAILY", duration_seconds=3600)
    world = FakeWorld(current_version=1, versions=[1], freezes=[window])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.stage == "frozen")
        assert status.frozen.startswith("outside the deploy windows: window prod@local: "
                                        "FREQ=DAILY")
        assert status.frozen_until == opens
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert opens <= world.scheduled["start v2"] < opens + timedelta(hours=1)


async def test_no_wait_into_a_freeze_ends_at_once_and_touches_nothing(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    world = FakeWorld(current_version=1, versions=[1], freezes=[FreezeRule(
        scope="*", reason="incident 42", starts_at=now, incident=True)])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST.model_copy(update={"no_wait": True}), queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert ("prod@local is closed for releases: incident freeze of *: incident 42; opens when "
            "the freeze is lifted") in str(failure.value.cause)
    assert world.finished[-1].state == ReleaseState.FAILED
    assert not any(call.startswith(("start", "drain")) for call in world.calls)


async def test_break_glass_needs_a_second_approver_then_passes_the_freeze(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    world = FakeWorld(current_version=1, versions=[1], freezes=[FreezeRule(
        scope="prod", reason="incident 42", starts_at=now, incident=True)])
    request = REQUEST.model_copy(update={"break_glass": "payments down, fix in v2"})
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, request, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        with pytest.raises(WorkflowUpdateFailedError) as own:
            await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "ana"))
        assert "four eyes: ana requested this release" in str(own.value.cause)
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        outcome = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert status.break_glass == "payments down, fix in v2"
    assert any("break glass: freezes and windows do not hold this release" in e.message
               for e in status.events)
    assert world.notices and all(title.startswith("[BREAK GLASS]") for title in world.notices)


async def test_an_incident_freeze_holds_a_gray_release_at_its_next_step_until_lifted(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=60, hold_stable=True)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        await wait_for(handle, lambda s: s.stage == "waiting_stable" and s.step == 1)
        now = await env.get_current_time()
        world.freezes.append(FreezeRule(id=9, scope="prod", reason="db failover",
                                        starts_at=now, incident=True, created_by="sre"))
        await handle.signal(ReleaseWorkflow.freeze, FreezeNotice(reason="db failover",
                                                                 by="sre"))
        world.hold_stable = False
        await handle.execute_update(ReleaseWorkflow.promote, ControlInput(user="sre"))
        status = await wait_for(handle, lambda s: s.stage == "frozen")
        assert status.step == 1 and "db failover" in status.frozen
        started = [call for call in world.calls if call.startswith("start")]
        world.freezes.clear()
        await handle.signal(ReleaseWorkflow.thaw)
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert len(started) == 1  # step 2 waited for the thaw
    assert len([call for call in world.calls if call.startswith("start")]) > 1


# ---------------------------------------------------------------- rollbacks and freezes


def _incident(now: datetime) -> list[FreezeRule]:
    return [FreezeRule(id=5, scope="prod", reason="incident 42", starts_at=now, incident=True,
                       created_by="sre")]


async def test_a_rollback_to_a_recent_baseline_stays_fast_and_passes_a_freeze(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=2, versions=[2], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=60, fast_rollback=True,
                      freezes=_incident(await env.get_current_time()))
    status, outcome = await run_release(env, world, ReleaseRequest(
        app="shop", env="prod@local", rollback_to=1, requested_by="ana"))
    assert outcome.state == ReleaseState.SUCCEEDED
    assert status.steps == 1  # the switch: one step, no stable waits
    assert [call for call in world.calls if call.startswith("start")] == [
        "start v3 sha256:v1 x4"]
    assert world.approvals == []  # an emergency undo waits for nobody
    assert any("a rollback to recent baseline v1: freezes and windows do not hold it"
               in e.message for e in status.events)


async def test_a_rollback_to_an_old_baseline_waits_for_a_second_person(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=5, versions=[5], strategy=Strategy.GRAY, replicas=4,
                      fast_rollback=True, rollback_recent=False,
                      freezes=_incident(await env.get_current_time()))
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, ReleaseRequest(
            app="shop", env="prod@local", rollback_to=1, requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        assert not any(call.startswith("start") for call in world.calls)
        with pytest.raises(WorkflowUpdateFailedError) as own:
            await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "ana"))
        assert "four eyes" in str(own.value.cause)
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        outcome = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.approvals == ["awaiting", "lead"]
    assert status.steps > 1  # not the fast switch: the environment's steps
    assert any("an approved rollback to baseline v1: freezes and windows do not hold it"
               in e.message for e in status.events)


async def test_rollback_image_is_a_release_approved_analysed_and_held_by_a_freeze(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    ends = now + timedelta(hours=2)
    policy = AnalysisPolicy(metrics=[Metric(name="errors", query="error_rate", max=0.05)])
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=10, analysis=policy, approval_required=True,
                      fast_rollback=True, freezes=[FreezeRule(
                          id=6, scope="prod", reason="promotion", starts_at=now,
                          ends_at=ends)])
    request = ReleaseRequest(app="shop", env="prod@local", image="slipway/shop:hotfix",
                             rollback=True, requested_by="ana")
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, request, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        status = await wait_for(handle, lambda s: s.stage == "frozen")
        assert "promotion" in status.frozen
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert "check analysis" in world.calls
    assert [m for m in world.measured if m.metrics]  # the canary was judged
    assert world.scheduled["start v2"] >= ends  # waited out the freeze


# ---------------------------------------------------------------- long freezes, short histories


async def _runs(env: WorkflowEnvironment, workflow_id: str, first_run: str) -> list[int]:
    """Events of each run of a release, following its continue-as-new chain."""
    counts, run_id = [], first_run
    while run_id:
        history = await env.client.get_workflow_handle(workflow_id,
                                                       run_id=run_id).fetch_history()
        counts.append(len(history.events))
        last = history.events[-1]
        run_id = (last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                  if last.HasField("workflow_execution_continued_as_new_event_attributes")
                  else "")
    return counts


async def test_a_release_held_120_days_by_an_incident_freeze_keeps_its_history_short(
    env: WorkflowEnvironment,
) -> None:
    began = await env.get_current_time()
    world = FakeWorld(current_version=1, versions=[1], freezes=_incident(began))
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        await wait_for(handle, lambda s: s.stage == "frozen")
        await env.sleep(timedelta(days=120))  # no end: only the daily safety re-check
        status = await handle.query(ReleaseWorkflow.status)
        assert status.stage == "frozen" and "incident 42" in status.frozen
        assert status.frozen_until is None
        world.freezes.clear()  # `slipway freeze remove 5` lifts it and signals
        await handle.signal(ReleaseWorkflow.freezes_changed)
        outcome = await handle.result()
        history = await handle.fetch_history()  # the last run
        runs = await _runs(env, handle.id, handle.first_execution_run_id or "")
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.scheduled["start v2"] >= began + timedelta(days=120)
    assert len(history.events) < 300
    assert len(runs) > 1 and max(runs) < 300  # every run short; before: 11 events a 10 min
    assert sum(runs) < 2500  # ~14 events a day; before: 1,584 a day (limit after 32 days)


async def test_a_lifted_freeze_wakes_the_waiting_release_by_signal(
    env: WorkflowEnvironment,
) -> None:
    now = await env.get_current_time()
    world = FakeWorld(current_version=1, versions=[1], freezes=[FreezeRule(
        id=4, scope="prod", reason="promotion month", starts_at=now,
        ends_at=now + timedelta(days=30), created_by="sre")])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.stage == "frozen")
        assert status.frozen_until == now + timedelta(days=30)
        # A freeze added meanwhile: the waiting release shows the new reason at once.
        world.freezes.append(FreezeRule(id=7, scope="*", reason="db failover",
                                        starts_at=now, incident=True, created_by="sre"))
        await handle.signal(ReleaseWorkflow.freezes_changed)
        status = await wait_for(handle, lambda s: "db failover" in s.frozen)
        assert status.stage == "frozen" and status.frozen_until is None
        # Both lifted: no time passes (queries do not skip time), the signal wakes it.
        world.freezes.clear()
        await handle.signal(ReleaseWorkflow.freezes_changed)
        status = await wait_for(handle, lambda s: s.stage != "frozen")
        assert status.frozen == "" and status.frozen_until is None
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.scheduled["start v2"] < now + timedelta(days=1)
