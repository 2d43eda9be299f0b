"""Analysis policies refuse what cannot be judged; one reading gets one verdict."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from schemas.analysis import (
    AnalysisPolicy,
    AnalysisTarget,
    Metric,
    Mode,
    Provider,
    Reading,
    Verdict,
    analysis_table,
)


def errors(**overrides: object) -> Metric:
    values: dict[str, object] = dict(name="errors", query="error_rate", max=0.05,
                                     min_sample=20)
    values.update(overrides)
    return Metric.model_validate(values)


@pytest.mark.parametrize(("raw", "message"), [
    ({"metrics": []}, "at least 1 item"),
    ({"metrics": [{"name": "e", "query": "error_rate"}]}, "has no condition"),
    ({"metrics": [{"name": "e", "query": "errors_per_second", "max": 1}]},
     "the haproxy provider measures error_rate"),
    ({"metrics": [{"name": "e", "query": "error_rate", "max": math.nan}]},
     "finite number"),
    ({"metrics": [{"name": "e", "query": "error_rate", "max": "inf"}]}, "finite number"),
    ({"metrics": [{"name": "e", "provider": "prometheus", "query": "up", "max": 1}]},
     "needs address"),
    ({"metrics": [{"name": "e", "provider": "datadog", "query": "up", "max": 1}]},
     "'haproxy', 'prometheus' or 'web'"),
    ({"metrics": [{"name": "e", "provider": "prometheus", "address": "http://p:9090",
                   "query": "up{v='{{versoin}}'}", "max": 1}]}, "unknown placeholders"),
    ({"metrics": [{"name": "e", "provider": "web", "query": "http://x/smoke", "min": 1}]},
     "needs field"),
    ({"metrics": [{"name": "e", "query": "error_rate", "max": 1, "typo": 2}]},
     "Extra inputs are not permitted"),
    ({"metrics": [{"name": "e", "query": "error_rate", "max": 1},
                  {"name": "e", "query": "requests", "min": 1}]}, "unique"),
    ({"metrics": [{"name": "Bad Name", "query": "error_rate", "max": 1}]}, "lowercase"),
    ({"metrics": [{"name": "e", "query": "error_rate", "max_ratio": 0}]}, "greater than 0"),
])
def test_a_policy_that_cannot_be_judged_is_refused(raw: object, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AnalysisPolicy.model_validate(raw)
    assert message in str(refused.value)


def test_the_canary_value_is_judged_against_its_conditions() -> None:
    metric = errors()
    assert metric.judge(Reading(value=0.01, sample=100))[0] == Verdict.PASSED
    verdict, why = metric.judge(Reading(value=0.1, sample=100))
    assert (verdict, why) == (Verdict.FAILED, "0.1 > 0.05")


def test_too_small_a_sample_or_no_data_is_inconclusive_and_a_provider_error_is_an_error() -> None:
    metric = errors()
    verdict, why = metric.judge(Reading(value=0.5, sample=19))
    assert verdict == Verdict.INCONCLUSIVE and "fewer than the minimum sample of 20" in why
    assert metric.judge(Reading(value=None, sample=50))[0] == Verdict.INCONCLUSIVE
    assert metric.judge(Reading(value=math.nan))[0] == Verdict.INCONCLUSIVE
    assert metric.judge(Reading(error="connection refused")) == (Verdict.ERROR,
                                                                  "connection refused")


def test_canary_against_baseline_as_a_ratio_and_as_a_difference() -> None:
    ratio = errors(max=None, max_ratio=2)
    assert ratio.judge(Reading(value=0.03, baseline=0.02, sample=100))[0] == Verdict.PASSED
    verdict, why = ratio.judge(Reading(value=0.05, baseline=0.02, sample=100))
    assert verdict == Verdict.FAILED and "2.5× baseline > 2×" in why
    # A clean baseline: any error in the canary is infinitely worse.
    assert ratio.judge(Reading(value=0.01, baseline=0.0, sample=100))[0] == Verdict.FAILED
    assert ratio.judge(Reading(value=0.0, baseline=0.0, sample=100))[0] == Verdict.PASSED
    assert ratio.judge(Reading(value=0.01, sample=100))[0] == Verdict.INCONCLUSIVE
    latency = Metric(name="latency", query="response_time_ms", max_increase=100)
    assert latency.judge(Reading(value=150, baseline=60))[0] == Verdict.PASSED
    assert latency.judge(Reading(value=360, baseline=60))[0] == Verdict.FAILED


def test_placeholders_are_filled_per_measured_version() -> None:
    target = AnalysisTarget(app="shop", env="prod@local", env_key="shop-prod-local",
                            version=3, baseline_version=2)
    query = 'sum(rate(x{proxy="be",server=~"{{ server_prefix }}.*",env="{{env_key}}"}[1m]))'
    filled = 'sum(rate(x{proxy="be",server=~"v3-.*",env="shop-prod-local"}[1m]))'
    assert target.fill(query) == filled
    assert target.fill("{{version}}/{{baseline_version}}", version=2) == "2/2"


def test_the_policy_cadence_is_its_shortest_interval_and_defaults_are_safe() -> None:
    policy = AnalysisPolicy(metrics=[errors(interval_seconds=30),
                                     Metric(name="p95", provider=Provider.PROMETHEUS,
                                            address="http://127.0.0.1:9090", query="up",
                                            max=1, interval_seconds=15)])
    assert policy.interval_seconds == 15
    assert policy.metrics[0].mode == Mode.ENFORCING
    assert policy.metrics[0].failure_limit == 0


def test_the_web_ui_table_shows_the_latest_figure_of_each_metric() -> None:
    from datetime import UTC, datetime

    from schemas.analysis import Measurement
    older = Measurement(metric="errors", mode=Mode.ENFORCING, step=1, at=datetime.now(UTC),
                        value=0.2, condition="≤ 0.05", verdict=Verdict.FAILED)
    newer = older.model_copy(update={"value": 0.01, "verdict": Verdict.PASSED})
    table = analysis_table([older, newer])
    assert "| errors | enforcing | 0.01 | - | ≤ 0.05 | passed |" in table
    assert "0.2" not in table
    assert analysis_table([]) == ""


INF = math.inf


@pytest.mark.parametrize(("reading", "why"), [
    # inf/inf is NaN and inf - inf is NaN: every comparison with NaN is False, so both the
    # ratio and the increase conditions used to pass.
    (Reading(value=INF, baseline=INF, sample=100), "canary's figure is not a finite number"),
    (Reading(value=INF, baseline=0.02, sample=100), "canary's figure is not a finite number"),
    (Reading(value=-INF, baseline=0.02, sample=100), "canary's figure is not a finite number"),
    (Reading(value=math.nan, baseline=0.02, sample=100), "no data for the canary"),
    (Reading(value=0.01, baseline=INF, sample=100), "baseline's figure is not a finite number"),
    (Reading(value=0.01, baseline=-INF, sample=100), "baseline's figure is not a finite number"),
    (Reading(value=0.01, baseline=math.nan, sample=100),
     "baseline's figure is not a finite number"),
])
@pytest.mark.parametrize("condition", [{"max_ratio": 2}, {"max_increase": 0.01},
                                       {"max_ratio": 2, "max_increase": 0.01}])
def test_a_non_finite_figure_against_the_baseline_is_inconclusive_never_a_pass(
        reading: Reading, why: str, condition: dict[str, float]) -> None:
    metric = errors(max=None, **condition)
    verdict, detail = metric.judge(reading)
    assert (verdict, why in detail) == (Verdict.INCONCLUSIVE, True), detail


@pytest.mark.parametrize("value", [INF, -INF, math.nan])
def test_a_non_finite_canary_is_inconclusive_against_max_and_min_too(value: float) -> None:
    assert errors().judge(Reading(value=value, sample=100))[0] == Verdict.INCONCLUSIVE
    floor = Metric(name="requests", query="requests", min=10)
    assert floor.judge(Reading(value=value, sample=100))[0] == Verdict.INCONCLUSIVE


def test_a_non_finite_baseline_leaves_a_broken_max_failed_and_a_kept_one_inconclusive() -> None:
    both = errors(max_ratio=2)  # max 0.05 and at most twice the baseline
    verdict, why = both.judge(Reading(value=0.1, baseline=INF, sample=100))
    assert (verdict, why) == (Verdict.FAILED, "0.1 > 0.05")
    assert both.judge(Reading(value=0.01, baseline=INF, sample=100))[0] == Verdict.INCONCLUSIVE
    # A metric that does not compare with the baseline does not look at it.
    assert errors().judge(Reading(value=0.01, baseline=INF, sample=100))[0] == Verdict.PASSED
