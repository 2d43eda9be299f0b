"""StepJudge: which measurements fail a step, pause it, or leave it to go on."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.analysis import AnalysisPolicy, Measurement, Metric, Mode, Verdict
from workflows.rollout.analysis import Decision, StepJudge


def judge(**overrides: object) -> StepJudge:
    values: dict[str, object] = dict(name="errors", query="error_rate", max=0.05)
    values.update(overrides)
    return StepJudge(AnalysisPolicy(metrics=[Metric.model_validate(values)]))


def taken(verdict: Verdict, mode: Mode = Mode.ENFORCING) -> Measurement:
    return Measurement(metric="errors", mode=mode, step=1, at=datetime.now(UTC),
                       condition="≤ 0.05", verdict=verdict, detail=str(verdict))


def test_an_enforcing_failure_over_the_limit_fails_the_step() -> None:
    step = judge(failure_limit=1)
    assert step.add(taken(Verdict.FAILED)) is None
    decision = step.add(taken(Verdict.FAILED))
    assert decision == Decision("fail", "errors failed 2× (limit 1): failed")


def test_an_advisory_failure_pauses_and_a_dry_run_never_decides() -> None:
    assert judge(mode="advisory").add(taken(Verdict.FAILED, Mode.ADVISORY)) == Decision(
        "pause", "errors failed 1× (limit 0): failed")
    dry = judge(mode="dry-run")
    assert dry.add(taken(Verdict.FAILED, Mode.DRY_RUN)) is None
    assert dry.at_end() is None  # a dry-run metric need not pass either


def test_errors_in_a_row_over_the_limit_pause_and_a_good_reading_resets_them() -> None:
    step = judge(consecutive_error_limit=1)
    assert step.add(taken(Verdict.ERROR)) is None
    assert step.add(taken(Verdict.PASSED)) is None
    assert step.add(taken(Verdict.ERROR)) is None
    decision = step.add(taken(Verdict.ERROR))
    assert decision is not None and decision.action == "pause"
    assert "could not be measured 2× in a row" in decision.reason


def test_a_window_without_one_passing_measurement_is_inconclusive() -> None:
    step = judge()
    step.add(taken(Verdict.INCONCLUSIVE))
    decision = step.at_end()
    assert decision is not None and decision.action == "pause"
    assert decision.reason.startswith("inconclusive: no conclusive passing measurement of errors")
    step.add(taken(Verdict.PASSED))
    assert step.at_end() is None
