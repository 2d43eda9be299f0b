"""ReleaseWorkflow under faults: undo that must not race the cancelled activity, compensation a
cancel cannot stop, bookkeeping and undo retried until done, abort refused once committed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from schemas.analysis import AnalysisPolicy, Metric, Verdict
from schemas.enums import ReleaseState, Strategy
from schemas.models import ControlInput, ReleaseRequest
from tests.workflows.fakes import FakeWorld, start, wait_for, worker
from workflows.release import ReleaseWorkflow

REQUEST = ReleaseRequest(app="shop", env="prod@local", requested_by="ana")


async def cancel_seen(handle: WorkflowHandle[Any, Any]) -> None:
    """Wait until the workflow has run a workflow task after the cancel request."""
    for _ in range(300):
        types = [event.event_type async for event in handle.fetch_history_events()]
        if EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in types:
            after = types[types.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED):]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in after:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the cancel request never reached the workflow")


async def test_abort_waits_for_the_cancelled_start_before_undoing(
    fresh_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], block_start_for=2)
    runner, queue = worker(fresh_env, world)
    async with runner:
        handle = await start(fresh_env, world, REQUEST, queue)
        await asyncio.wait_for(world.ready_started.wait(), timeout=30)
        await handle.execute_update(ReleaseWorkflow.abort, ControlInput(user="sre"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        world.unblock.set()
    # The late start finished cancelling before the undo took v2 out and removed it.
    undo = world.calls[world.calls.index("stop v1"):]
    assert undo[1:4] == ["start v2 cancelled", "unroute v2", "remove v2"]
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK


async def test_a_cancel_during_compensation_does_not_stop_it(
    fresh_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=3600, block_ready_for=1, hold_stable=True)
    runner, queue = worker(fresh_env, world)
    with fresh_env.auto_time_skipping_disabled():
        async with runner:
            handle = await start(fresh_env, world, REQUEST, queue)
            await wait_for(handle, lambda s: s.step == 1 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.promote, ControlInput(user="sre"))
            await wait_for(handle, lambda s: s.step == 2 and s.stage == "waiting_stable")
            await handle.execute_update(ReleaseWorkflow.abort,
                                        ControlInput(user="sre", reason="error rate"))
            # The undo restoring v1 is in flight; a cancel arrives now.
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)
            await handle.cancel()
            await cancel_seen(handle)
            world.unblock.set()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert world.calls[-2:] == ["unroute v2", "remove v2"]  # the undo went to its end
    assert "ready v1 cancelled" not in world.calls
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert world.notices[-1] == "release shop@prod@local rolled_back"


async def test_undo_is_retried_until_it_succeeds(env: WorkflowEnvironment) -> None:
    # 7 failed attempts: more than the bounded policy of ordinary steps allows.
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2, flaky_route_for=1,
                      flaky_times=7)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "release rolled_back" in str(failure.value.cause)
    assert world.calls[-1] == "route v1-0,v1-1"
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK


async def test_the_baseline_write_is_retried_until_it_succeeds(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], flaky_finish=True, flaky_times=7)
    runner, queue = worker(env, world)
    async with runner:
        outcome = await (await start(env, world, REQUEST, queue)).result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert [f.state for f in world.finished] == [ReleaseState.SUCCEEDED]


async def test_abort_after_the_point_of_no_return_is_refused(
    fresh_env: WorkflowEnvironment,
) -> None:
    # Recreate: v2 serves all traffic, then the old containers are removed (held here).
    world = FakeWorld(current_version=1, versions=[1], block_remove_for=1)
    runner, queue = worker(fresh_env, world)
    async with runner:
        handle = await start(fresh_env, world, REQUEST, queue)
        await asyncio.wait_for(world.ready_started.wait(), timeout=30)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(ReleaseWorkflow.abort, ControlInput(user="sre"))
        assert "v2 already serves all traffic; roll back with `slipway rollback`" in str(
            refused.value.cause)
        world.unblock.set()
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert [f.state for f in world.finished] == [ReleaseState.SUCCEEDED]


async def test_a_stable_wait_over_the_maximum_is_refused_before_anything_changes(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=90000)
    runner, queue = worker(env, world)
    async with runner:
        with pytest.raises(WorkflowFailureError) as failure:
            await (await start(env, world, REQUEST, queue)).result()
    assert "stable time of 90000s is over the maximum of 86400s per step" in str(
        failure.value.cause)
    assert not any(call.startswith(("start", "drain", "stop")) for call in world.calls)


async def test_an_hour_of_stable_waiting_writes_a_handful_of_events(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=3600)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
        history = await handle.fetch_history()
    assert world.health_checks == 3 * 360  # every replica probed every 10 s, every step
    # A timer and a probe per 10 s tick wrote ~11 events a tick: ~12,000 for these waits.
    assert len(history.events) < 400


async def test_a_failed_undo_step_does_not_stop_the_later_ones(env: WorkflowEnvironment) -> None:
    # Recreate: v1 was stopped before v2 started. Removing v2 fails for good; v1 must still
    # come back, or the environment ends with nothing serving.
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2, fail_remove_for=2)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    undo = world.calls[world.calls.index("start v2 sha256:new x2") + 1:]
    assert undo == ["unroute v2", "remove v2 failed", "start v1 sha256:v1 x2", "ready v1",
                    "route v1-0,v1-1"]
    not_undone = "not undone: remove v2 (failed: dockerd refused to remove v2)"
    assert str(failure.value.cause).endswith(f": release failed: v2-0 exited: boom; {not_undone}")
    assert world.finished[-1].state == ReleaseState.FAILED
    assert world.finished[-1].error == f"v2-0 exited: boom; {not_undone}"
    assert world.notices[-1] == "ALERT: release shop@prod@local failed"
    assert not_undone in world.messages[-1] and "restore v1" not in world.messages[-1]
    assert "undone: restore v1" in [event.message for event in status.events]


async def test_every_step_that_did_not_undo_is_named(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2, fail_remove_for=2,
                      fail_undo=True)
    runner, queue = worker(env, world)
    async with runner:
        with pytest.raises(WorkflowFailureError):
            await (await start(env, world, REQUEST, queue)).result()
    assert world.finished[-1].state == ReleaseState.FAILED
    assert world.finished[-1].error == (
        "v2-0 exited: boom; not undone: remove v2 (failed: dockerd refused to remove v2); "
        "restore v1 (failed: haproxy socket gone)")
    assert world.notices[-1] == "ALERT: release shop@prod@local failed"
    assert "remove v2 (failed" in world.messages[-1]
    assert "restore v1 (failed: haproxy socket gone)" in world.messages[-1]


async def test_when_the_old_version_cannot_come_back_the_new_one_keeps_serving(
    env: WorkflowEnvironment,
) -> None:
    # Gray: step 2 runs v2×2 beside v1×2 when the canary analysis fails. Restoring v1 fails
    # (its routing), so the undo leaves v2 in rotation rather than take the last version
    # still serving away too.
    analysis = AnalysisPolicy(metrics=[Metric(name="errors", query="error_rate", max=0.05)])
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=30, analysis=analysis, fail_undo=True,
                      verdicts=[Verdict.PASSED] * 3 + [Verdict.FAILED])
    runner, queue = worker(env, world)
    async with runner:
        with pytest.raises(WorkflowFailureError) as failure:
            await (await start(env, world, REQUEST, queue)).result()
    after = world.calls[world.calls.index("drain v1 keep 2") + 1:]
    assert after == ["start v1 sha256:v1 x2",  # step 2: v1 down to 2
                     "start v1 sha256:v1 x4", "ready v1"]  # the undo: routing v1 fails
    assert "unroute v2" not in world.calls and "remove v2" not in world.calls
    assert world.finished[-1].state == ReleaseState.FAILED
    assert world.finished[-1].error == (
        "canary analysis failed at step 2: errors failed 1× (limit 0): failed; not undone: "
        "restore v1 (failed: haproxy socket gone); remove v2 (skipped: v1 could not be "
        "restored, so v2 keeps serving)")
    assert "release failed" in str(failure.value.cause)
    assert world.notices[-1] == "ALERT: release shop@prod@local failed"
