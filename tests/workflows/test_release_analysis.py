"""Canary analysis decides gray steps, and a fast rollback switches in one step
(ReleaseWorkflow on the time-skipping server, activities faked)."""

from __future__ import annotations

import math

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from schemas.analysis import AnalysisPolicy, Metric, Mode, Provider, Reading, Verdict
from schemas.enums import ReleaseState, Strategy
from schemas.models import ControlInput, ReleaseRequest, ReleaseStatus
from tests.workflows.fakes import FakeWorld, run_release, start, wait_for, worker
from workflows.release import ReleaseWorkflow

REQUEST = ReleaseRequest(app="shop", env="prod@local", image="slipway/shop:v2",
                         requested_by="ana")


def policy(mode: Mode = Mode.ENFORCING, **overrides: object) -> AnalysisPolicy:
    return AnalysisPolicy(metrics=[Metric(name="errors", query="error_rate", max=0.05,
                                          interval_seconds=10, mode=mode, **overrides)])


def analysed_world(verdicts: list[Verdict], mode: Mode = Mode.ENFORCING) -> FakeWorld:
    return FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                     stable_seconds=30, analysis=policy(mode), verdicts=verdicts)


async def test_a_failed_measurement_rolls_back_at_the_first_step(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED])
    with pytest.raises(WorkflowFailureError):
        status, _ = await run_release(env, world, REQUEST)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "canary analysis failed at step 1: errors failed 1×" in world.finished[-1].error
    # One counter snapshot and one measurement, then the undo: step 2 never started.
    assert [m.metrics for m in world.measured] == [[], ["errors"]]
    assert not any(call.startswith("start v2") and call.endswith("x2") for call in world.calls)
    assert "remove v2" in world.calls  # the undo took the canary away


async def test_a_healthy_canary_completes_with_every_measurement_recorded(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.PASSED])
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    # Three steps × (30 s / 10 s) measurements, each step from its own counter snapshot.
    measured = [m for m in world.measured if m.metrics]
    assert [m.step for m in measured] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert len(status.analysis) == 9
    assert all(item.verdict == Verdict.PASSED for item in status.analysis)
    assert world.measured[1].since == {"errors": {"2": [100.0, 0.0]}}


async def test_a_dry_run_metric_that_fails_never_stops_the_release(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED], mode=Mode.DRY_RUN)
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert status.analysis and all(m.verdict == Verdict.FAILED for m in status.analysis)


async def test_too_little_traffic_is_inconclusive_and_pauses_until_promoted(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.INCONCLUSIVE])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.awaiting == "promote")
        assert status.step == 1 and status.stage == "gate"
        assert "inconclusive: no conclusive passing measurement of errors" \
            in status.events[-1].message
        assert any(n.startswith("analysis needs a decision") for n in world.notices)
        world.verdicts = [Verdict.PASSED]
        await handle.execute_update(ReleaseWorkflow.promote, ControlInput(user="lead"))
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED


async def test_a_first_release_without_traffic_is_not_held_and_says_so(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.INCONCLUSIVE])
    world.current_version, world.versions = 0, []  # nothing served before: no baseline
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    noted = [e.message for e in status.events if "no traffic to judge on a first release" in
             e.message]
    # A first release has nothing to shift from: one step, judged once.
    assert [message.split(":")[1].strip() for message in noted] == ["step 1"]
    assert not any(n.startswith("analysis needs a decision") for n in world.notices)


async def test_a_first_release_with_a_failing_figure_still_rolls_back(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED])
    world.current_version, world.versions = 0, []
    with pytest.raises(WorkflowFailureError):
        await run_release(env, world, REQUEST)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "canary analysis failed at step 1" in world.finished[-1].error


async def test_an_advisory_failure_pauses_and_an_abort_rolls_back(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED], mode=Mode.ADVISORY)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.awaiting == "promote")
        assert "errors failed 1× (limit 0)" in status.events[-1].message
        await handle.execute_update(ReleaseWorkflow.abort,
                                    ControlInput(user="sre", reason="error rate"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "remove v2" in world.calls  # the undo took the canary away


async def test_the_failure_limit_tolerates_that_many_failed_measurements(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED, Verdict.FAILED, Verdict.PASSED])
    world.analysis = policy(failure_limit=2)
    _status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED


async def test_a_policy_the_providers_refuse_fails_the_release_before_anything_runs(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.PASSED])
    world.bad_policy = "metric 'p95': Prometheus refused the query: bad_data: parse error"
    with pytest.raises(WorkflowFailureError):
        await run_release(env, world, REQUEST)
    assert world.finished[-1].state == ReleaseState.FAILED
    assert "parse error" in world.finished[-1].error
    assert world.calls == ["prepare", "check analysis"]


async def test_a_fast_rollback_brings_the_old_image_back_in_one_step_without_waits(
        env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=2, versions=[2], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=60, analysis=policy(), fast_rollback=True)
    status, outcome = await run_release(
        env, world, ReleaseRequest(app="shop", env="prod@local", rollback_to=1))
    assert outcome.state == ReleaseState.SUCCEEDED
    assert status.steps == 1
    assert [call for call in world.calls if call.startswith("start")] == [
        "start v3 sha256:v1 x4"]
    assert world.health_checks == 0 and world.measured == []  # no stable wait, no analysis
    assert world.calls[-2:] == ["drain v2", "remove v2"]  # v2 out of rotation, then gone


async def test_an_infinite_canary_against_an_infinite_baseline_never_passes_a_step(
        env: WorkflowEnvironment) -> None:
    # +Inf / +Inf (a query dividing by zero traffic, in both versions) once passed the ratio
    # and increase conditions; the real judge now finds it inconclusive, so the step is
    # held for a person instead of going on.
    world = analysed_world([Verdict.PASSED])
    world.analysis = AnalysisPolicy(metrics=[Metric(
        name="latency", provider=Provider.PROMETHEUS, address="http://127.0.0.1:9090",
        query="p95{version='{{version}}'}", max_ratio=1.5, max_increase=50,
        interval_seconds=10)])
    world.readings = [Reading(value=math.inf, baseline=math.inf)]
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        status = await wait_for(handle, lambda s: s.awaiting == "promote")
        assert status.step == 1 and status.stage == "gate"
        assert [m.verdict for m in status.analysis] == [Verdict.INCONCLUSIVE] * 3
        assert "not a finite number" in status.analysis[-1].detail
        assert "inconclusive: no conclusive passing measurement of latency" \
            in status.events[-1].message
        await handle.execute_update(ReleaseWorkflow.abort,
                                    ControlInput(user="sre", reason="no figures"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert not any(call.startswith("start v2") and call.endswith("x2") for call in world.calls)


# -- no silent off (#29): every release with a policy is measured, or says why not ----------


def versions_of(status: ReleaseStatus) -> dict[int, tuple[int, int, float]]:
    return {v.version: (v.desired, v.ready, v.traffic_percent) for v in status.versions}


async def test_a_recreate_release_is_judged_once_the_new_version_serves_and_rolled_back(
        env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.RECREATE, replicas=2,
                      stable_seconds=60, analysis=policy(), verdicts=[Verdict.FAILED])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "canary analysis failed at step 1: errors failed 1×" in world.finished[-1].error
    # A counter snapshot once v2 serves alone, then one measurement: v1 is stopped, so the
    # new version is measured without a baseline beside it.
    assert [m.metrics for m in world.measured] == [[], ["errors"]]
    assert all(m.target.version == 2 and m.target.baseline_version == 0
               for m in world.measured)
    assert world.calls.index("ready v2") < world.calls.index("unroute v2")
    after = world.calls[world.calls.index("unroute v2"):]
    assert after == ["unroute v2", "remove v2", "start v1 sha256:v1 x2", "ready v1",
                     "route v1-0,v1-1"]
    assert len(status.analysis) == 1 and status.analysis[0].verdict == Verdict.FAILED
    # status shows what runs after the undo: v1 alone, with all the traffic.
    assert versions_of(status) == {2: (0, 0, 0), 1: (2, 2, 100)}


async def test_a_healthy_recreate_release_is_measured_for_the_stable_time(
        env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.RECREATE, replicas=2,
                      stable_seconds=30, analysis=policy(), verdicts=[Verdict.PASSED])
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert [m.metrics for m in world.measured] == [[], ["errors"], ["errors"], ["errors"]]
    assert [item.verdict for item in status.analysis] == [Verdict.PASSED] * 3
    # Judged before the point of no return: the old containers go only afterwards.
    assert world.calls[-1] == "remove v1"
    assert versions_of(status) == {2: (2, 2, 100), 1: (0, 0, 0)}


async def test_a_recreate_release_without_a_stable_time_says_why_it_is_not_measured(
        env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.RECREATE,
                      stable_seconds=0, analysis=policy(), verdicts=[Verdict.FAILED])
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.measured == []
    assert any("analysis: not measured: the stable time is 0s" in e.message
               for e in status.events)


async def test_a_gray_release_without_a_stable_time_says_why_no_step_is_measured(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED])
    world.stable_seconds = 0
    status, outcome = await run_release(env, world, REQUEST)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.measured == []
    noted = [e.message for e in status.events if "not measured" in e.message]
    assert noted == [f"analysis: step {n} not measured: the stable time is 0s, so there is "
                     "no window to judge it in; set --stable for the environment"
                     for n in (1, 2, 3)]


async def test_a_rollback_to_a_baseline_says_why_it_is_not_analysed(
        env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=2, versions=[2], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=60, analysis=policy(), fast_rollback=True)
    status, outcome = await run_release(
        env, world, ReleaseRequest(app="shop", env="prod@local", rollback_to=1))
    assert outcome.state == ReleaseState.SUCCEEDED and world.measured == []
    assert any(e.message == "analysis: not measured: a rollback to baseline 1 returns to a "
                            "version judged before" for e in status.events)


# -- status after the undo shows what runs (#29) ---------------------------------------------


async def test_status_after_a_rolled_back_canary_shows_only_the_old_version_serving(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.FAILED])  # fails at step 1: v2×1 beside v1×4
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert status.stage == ReleaseState.ROLLED_BACK
    assert versions_of(status) == {2: (0, 0, 0), 1: (4, 4, 100)}


async def test_status_after_a_rollback_past_a_shrunk_old_version_shows_it_restored(
        env: WorkflowEnvironment) -> None:
    # Step 2 runs v2×2 beside v1×2 when the analysis fails: the undo restores v1×4, then
    # removes v2.
    world = analysed_world([Verdict.PASSED] * 3 + [Verdict.FAILED])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert "canary analysis failed at step 2" in world.finished[-1].error
    assert versions_of(status) == {2: (0, 0, 0), 1: (4, 4, 100)}


async def test_status_after_an_abort_shows_only_the_old_version_serving(
        env: WorkflowEnvironment) -> None:
    world = analysed_world([Verdict.PASSED])
    world.hold_stable = True
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, world, REQUEST, queue)
        during = await wait_for(handle, lambda s: s.stage == "waiting_stable")
        assert versions_of(during) == {2: (1, 1, 20), 1: (4, 4, 80)}
        await handle.execute_update(ReleaseWorkflow.abort,
                                    ControlInput(user="sre", reason="looks wrong"))
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert versions_of(status) == {2: (0, 0, 0), 1: (4, 4, 100)}
