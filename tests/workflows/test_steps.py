"""Replica plans of grayscale and rolling releases."""

from __future__ import annotations

import pytest

from schemas.analysis import AnalysisPolicy, Metric, Mode
from workflows.steps import (
    MAX_STABLE_SECONDS,
    Step,
    analysis_wait_problem,
    gray_plan,
    parse_step,
    rolling_plan,
    stable_seconds_problem,
)


def pairs(plan: list[Step]) -> list[tuple[int, int] | str]:
    return ["gate" if s.gate else (s.new, s.old) for s in plan]


def test_seed_004_six_steps_for_ten_replicas() -> None:
    # v1 at 10 → one v2 beside it → v2 up / v1 down → v1 shut.
    assert pairs(gray_plan(["1", "50%", "100%"], 10, 10)) == [(1, 10), (5, 5), (10, 0)]


def test_gate_waits_between_steps_and_plan_always_ends_at_full() -> None:
    assert pairs(gray_plan(["1", "gate", "50%"], 4, 4)) == [(1, 4), "gate", (2, 2), (4, 0)]


def test_first_release_has_nothing_to_shift() -> None:
    assert pairs(gray_plan(["1", "50%", "100%"], 3, 0)) == [(3, 0)]


def test_scale_change_shrinks_old_in_proportion() -> None:
    assert pairs(gray_plan(["1", "50%", "100%"], 4, 2)) == [(1, 2), (2, 1), (4, 0)]


def test_rolling_batches() -> None:
    assert pairs(rolling_plan(2, 5, 5)) == [(2, 3), (4, 1), (5, 0)]
    assert pairs(rolling_plan(1, 1, 1)) == [(1, 0)]


@pytest.mark.parametrize("text", ["0%x", "-1", "half"])
def test_bad_steps_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid grayscale step"):
        parse_step(text, 4)


def test_stable_waits_are_bounded_per_step_and_per_release() -> None:
    assert stable_seconds_problem(MAX_STABLE_SECONDS, 4) is None
    assert "over the maximum of 86400s per step" in str(
        stable_seconds_problem(MAX_STABLE_SECONDS + 1))
    assert "8 steps × 86400s of stable time is over the maximum of 604800s" in str(
        stable_seconds_problem(86400, 8))


def test_a_policy_needs_an_analysed_wait() -> None:
    errors = Metric(name="errors", query="error_rate", max=0.05)
    ratio = Metric(name="slow", query="response_time_ms", max_ratio=2)
    dry = Metric(name="dry", query="response_time_ms", max_ratio=2, mode=Mode.DRY_RUN)
    assert analysis_wait_problem(0, None) is None
    assert "analysis needs a stable wait" in (
        analysis_wait_problem(0, AnalysisPolicy(metrics=[errors])) or "")
    assert analysis_wait_problem(60, AnalysisPolicy(metrics=[errors, ratio])) is None
    assert analysis_wait_problem(60, AnalysisPolicy(metrics=[errors, dry]), recreate=True) \
        is None
    assert "slow only compares with the baseline" in (
        analysis_wait_problem(60, AnalysisPolicy(metrics=[errors, ratio]), recreate=True) or "")
