"""Canary analysis: the policy an environment sets, and what one measurement concluded.

A policy lists metrics. Each names a provider (``haproxy``, ``prometheus``, ``web``), a query,
conditions on the canary's value (``max``/``min``) and/or on canary against baseline
(``max_ratio``/``max_increase``), and how much evidence a decision needs (``min_sample``,
``failure_limit``, ``consecutive_error_limit``). Its ``mode`` is the trust ramp: ``dry-run``
measures and shows, ``advisory`` pauses the release on failure, ``enforcing`` rolls it back.

Everything here is pure (no I/O): the workflow, the CLI and the activities share it.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ANALYSIS_MAX_METRICS = 10
# Placeholders a query or URL may hold; filled per measured version.
PLACEHOLDERS = ("version", "baseline_version", "app", "env", "env_key", "server_prefix")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class Provider(StrEnum):
    HAPROXY = "haproxy"
    PROMETHEUS = "prometheus"
    WEB = "web"


class Mode(StrEnum):
    """The trust ramp of a metric."""

    DRY_RUN = "dry-run"  # measured and shown, never decides
    ADVISORY = "advisory"  # a failure pauses the release for a person
    ENFORCING = "enforcing"  # a failure rolls the release back


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"  # too little traffic or no data: neither good nor bad
    ERROR = "error"  # the provider could not be asked


# What the haproxy provider measures, from `show stat` of a version's servers.
HAPROXY_QUERIES = {
    "error_rate": "share of answers that were 5xx in the interval (0 to 1)",
    "response_time_ms": "HAProxy's average response time of the version's servers (ms)",
    "requests": "requests the version's servers answered in the interval",
}


class Metric(BaseModel):
    """One measured figure and what it must satisfy."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    provider: Provider = Provider.HAPROXY
    # haproxy: a key of HAPROXY_QUERIES; prometheus: PromQL; web: a URL answering JSON.
    query: str
    # prometheus: the Prometheus base URL; haproxy and web: unused.
    address: str = ""
    # web: dotted path of the number in the JSON answer, e.g. ``data.error_rate``.
    field: str = ""
    max: float | None = None
    min: float | None = None
    max_ratio: float | None = Field(default=None, gt=0)
    max_increase: float | None = None
    interval_seconds: int = Field(default=10, ge=1, le=3600)
    # Requests the canary must have answered in an interval for its figure to count.
    min_sample: int = Field(default=0, ge=0, le=1_000_000)
    # Failed measurements tolerated per step; one more decides.
    failure_limit: int = Field(default=0, ge=0, le=100)
    # Provider errors in a row tolerated; one more makes the step inconclusive.
    consecutive_error_limit: int = Field(default=2, ge=0, le=100)
    mode: Mode = Mode.ENFORCING

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _METRIC_NAME.match(value):
            raise ValueError("a metric name is 1-40 lowercase letters, digits, '-' or '_', "
                             "starting with a letter")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Metric:
        if None is self.max is self.min is self.max_ratio is self.max_increase:
            raise ValueError(f"metric {self.name!r} has no condition: set max, min, max_ratio "
                             "or max_increase")
        unknown = set(_PLACEHOLDER.findall(self.query)) - set(PLACEHOLDERS)
        if unknown:
            raise ValueError(f"metric {self.name!r} uses unknown placeholders "
                             f"{sorted(unknown)}; known: {', '.join(PLACEHOLDERS)}")
        if self.provider == Provider.HAPROXY and self.query not in HAPROXY_QUERIES:
            raise ValueError(f"metric {self.name!r}: the haproxy provider measures "
                             f"{', '.join(HAPROXY_QUERIES)}, not {self.query!r}")
        if self.provider == Provider.PROMETHEUS and not self.address.startswith(
                ("http://", "https://")):
            raise ValueError(f"metric {self.name!r}: a prometheus metric needs address: the "
                             "Prometheus URL, e.g. http://127.0.0.1:9090")
        if self.provider == Provider.WEB:
            if not self.query.startswith(("http://", "https://")):
                raise ValueError(f"metric {self.name!r}: a web metric's query is the URL to "
                                 "GET, e.g. http://127.0.0.1:8000/smoke")
            if not self.field:
                raise ValueError(f"metric {self.name!r}: a web metric needs field: the "
                                 "dotted path of the number in the JSON answer")
        return self

    @property
    def compares_baseline(self) -> bool:
        return self.max_ratio is not None or self.max_increase is not None

    def condition_text(self) -> str:
        parts = []
        if self.max is not None:
            parts.append(f"≤ {self.max:g}")
        if self.min is not None:
            parts.append(f"≥ {self.min:g}")
        if self.max_ratio is not None:
            parts.append(f"≤ {self.max_ratio:g}× baseline")
        if self.max_increase is not None:
            parts.append(f"≤ baseline + {self.max_increase:g}")
        return ", ".join(parts)

    def judge(self, reading: Reading) -> tuple[Verdict, str]:
        """The verdict of one reading, and why."""
        if reading.error:
            return Verdict.ERROR, reading.error
        if reading.sample is not None and reading.sample < self.min_sample:
            return Verdict.INCONCLUSIVE, (f"{reading.sample} requests, fewer than the minimum "
                                          f"sample of {self.min_sample}")
        value = reading.value
        if value is None or math.isnan(value):
            return Verdict.INCONCLUSIVE, "no data for the canary"
        if not math.isfinite(value):
            # A division by zero in a query (no traffic): no figure, neither good nor bad.
            # Every comparison with it is meaningless (inf/inf is NaN, and NaN > x is False).
            return Verdict.INCONCLUSIVE, f"the canary's figure is not a finite number ({value:g})"
        broken = []
        if self.max is not None and value > self.max:
            broken.append(f"{value:g} > {self.max:g}")
        if self.min is not None and value < self.min:
            broken.append(f"{value:g} < {self.min:g}")
        if self.compares_baseline:
            baseline = reading.baseline
            if baseline is not None and not math.isfinite(baseline):
                # Nothing to compare with: never a pass. The canary's own figure breaking
                # max or min still fails it.
                if broken:
                    return Verdict.FAILED, "; ".join(broken)
                return Verdict.INCONCLUSIVE, (f"the baseline's figure is not a finite number "
                                              f"({baseline:g})")
            if baseline is None:
                if self.max is None and self.min is None:
                    return Verdict.INCONCLUSIVE, "no baseline to compare with"
            else:
                if self.max_ratio is not None:
                    # A baseline of 0 (no errors at all): any canary value above 0 is worse.
                    ratio = value / baseline if baseline else (math.inf if value else 1.0)
                    if ratio > self.max_ratio:
                        broken.append(f"{ratio:.3g}× baseline > {self.max_ratio:g}×")
                if self.max_increase is not None and value - baseline > self.max_increase:
                    broken.append(f"baseline {baseline:g} + {value - baseline:g} > "
                                  f"+{self.max_increase:g}")
        if broken:
            return Verdict.FAILED, "; ".join(broken)
        return Verdict.PASSED, "within " + self.condition_text()


class AnalysisPolicy(BaseModel):
    """An environment's canary analysis: the metrics judged during every stable wait."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[Metric] = Field(min_length=1, max_length=ANALYSIS_MAX_METRICS)

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisPolicy:
        names = [metric.name for metric in self.metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique within a policy")
        return self

    @property
    def interval_seconds(self) -> int:
        """The cadence the workflow wakes at: the shortest metric interval."""
        return min(metric.interval_seconds for metric in self.metrics)

    def metric(self, name: str) -> Metric:
        return next(metric for metric in self.metrics if metric.name == name)


class Reading(BaseModel):
    """What a provider saw: the canary's value, the baseline's, and the canary's sample."""

    value: float | None = None
    baseline: float | None = None
    sample: int | None = None
    error: str = ""


class AnalysisTarget(BaseModel):
    """Which versions of which environment a measurement compares."""

    app: str
    env: str
    env_key: str
    cluster: str = ""
    version: int
    baseline_version: int = 0

    def fill(self, template: str, version: int | None = None) -> str:
        """A query or URL with its ``{{placeholders}}`` filled for ``version``."""
        measured = self.version if version is None else version
        values = {"version": str(measured), "baseline_version": str(self.baseline_version),
                  "app": self.app, "env": self.env, "env_key": self.env_key,
                  "server_prefix": f"v{measured}-"}
        return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


class Measurement(BaseModel):
    """One metric measured once during a step: recorded, shown, and judged."""

    metric: str
    mode: Mode
    step: int
    at: datetime
    value: float | None = None
    baseline: float | None = None
    sample: int | None = None
    condition: str
    verdict: Verdict
    detail: str = ""


# HAProxy's counters per version ("3": [requests, 5xx]) at one moment.
Counters = dict[str, list[float]]


class MeasureInput(BaseModel):
    """Measure ``metrics`` of a policy for ``target`` (none: only read the counters).

    ``since`` holds, per metric, the HAProxy counters of its previous measurement, so its
    figures cover one interval; a metric without them covers its servers' whole life."""

    policy: AnalysisPolicy
    metrics: list[str]
    target: AnalysisTarget
    release_id: int = 0
    step: int = 0
    since: dict[str, Counters] = Field(default_factory=dict)


class MeasureResult(BaseModel):
    measurements: list[Measurement]
    # The counters now: the ``since`` of the metrics measured (see MeasureInput).
    counters: Counters = Field(default_factory=dict)


class CheckPolicyInput(BaseModel):
    policy: AnalysisPolicy
    target: AnalysisTarget


def analysis_table(measurements: list[Measurement]) -> str:
    """The latest measurement of each metric as a Markdown table (Web UI details)."""
    latest: dict[str, Measurement] = {}
    for item in measurements:
        latest[item.metric] = item
    if not latest:
        return ""
    rows = ["", "", "| metric | mode | value | baseline | condition | verdict |",
            "|---|---|---|---|---|---|"]
    for item in latest.values():
        rows.append(f"| {item.metric} | {item.mode} | {_figure(item.value)} | "
                    f"{_figure(item.baseline)} | {item.condition} | {item.verdict} |")
    return "\n".join(rows)


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"
