"""Canary analysis activities: measure a policy's metrics for a step, check a policy.

``MetricProviders`` asks each metric's provider (HAProxy's `show stat`, a Prometheus server,
an HTTP endpoint answering JSON) and judges the reading; the CLI's ``slipway analysis run``
uses it directly, the workflow through ``AnalysisActivities``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import heartbeating
from catalogue.analysis import record_measurements
from catalogue.store import Store
from integrations.haproxy.common import HaproxyError
from integrations.haproxy.router import HaproxyRouter
from integrations.haproxy.stats import VersionCounters, figure, version_counters
from integrations.prometheus.client import PrometheusClient, PrometheusError
from integrations.web.hosts import WebHostRefused, WebHosts
from integrations.web.json_metric import WebMetricError, read_field
from schemas.analysis import (
    AnalysisPolicy,
    AnalysisTarget,
    CheckPolicyInput,
    Counters,
    MeasureInput,
    Measurement,
    MeasureResult,
    Metric,
    Provider,
    Reading,
)
from schemas.settings import Settings


class MetricProviders:
    """Readings of metrics; ``haproxy`` maps the clusters whose traffic HAProxy carries."""

    def __init__(self, haproxy: dict[str, HaproxyRouter], default_cluster: str,
                 web_hosts: WebHosts | None = None) -> None:
        self.haproxy = haproxy
        self.default_cluster = default_cluster
        # The hosts the web provider may ask (SLIPWAY_ANALYSIS_WEB_HOSTS; default loopback).
        self.web_hosts = web_hosts or WebHosts()

    @classmethod
    def from_settings(cls, settings: Settings,
                      router: HaproxyRouter | None = None) -> MetricProviders:
        """HAProxy's figures for the clusters it routes (Docker engines), read through
        ``router`` (default: one on the state directory); the web provider limited to
        SLIPWAY_ANALYSIS_WEB_HOSTS."""
        router = router or HaproxyRouter(settings.state_dir, settings.haproxy_bin,
                                         settings.lb_bind_address)
        return cls({name: router for name, cluster in settings.clusters.items()
                    if cluster.runtime == "docker"}, settings.default_cluster,
                   WebHosts(settings.analysis_web_hosts))

    def measure(self, data: MeasureInput) -> MeasureResult:
        """Measure the named metrics once; haproxy figures cover the interval since
        ``data.since`` (the whole life of the servers when it is empty)."""
        target = data.target
        counters: dict[int, VersionCounters | None] = {}
        stats_error = ""
        if any(metric.provider == Provider.HAPROXY for metric in data.policy.metrics):
            try:
                stats = self._router(target).server_stats(target.env_key)
                counters = {version: version_counters(stats, version)
                            for version in (target.version, target.baseline_version) if version}
            except (HaproxyError, LookupError) as error:
                stats_error = str(error)
        now = datetime.now(UTC)
        measurements = []
        for name in data.metrics:
            metric = data.policy.metric(name)
            if metric.provider == Provider.HAPROXY:
                reading = (Reading(error=stats_error) if stats_error
                           else _haproxy_reading(metric, target, counters,
                                                 data.since.get(metric.name, {})))
            else:
                reading = self._remote_reading(metric, target)
            verdict, detail = metric.judge(reading)
            measurements.append(Measurement(
                metric=metric.name, mode=metric.mode, step=data.step, at=now,
                value=reading.value, baseline=reading.baseline, sample=reading.sample,
                condition=metric.condition_text(), verdict=verdict, detail=detail))
        return MeasureResult(measurements=measurements,
                             counters={str(version): found.as_list()
                                       for version, found in counters.items() if found})

    def problems(self, policy: AnalysisPolicy, target: AnalysisTarget) -> list[str]:
        """What would keep ``policy`` from measuring ``target``: asked of the providers
        themselves (Prometheus parses every query), before a release starts."""
        found = []
        for metric in policy.metrics:
            if metric.provider == Provider.HAPROXY:
                if (target.cluster or self.default_cluster) not in self.haproxy:
                    found.append(f"metric {metric.name!r}: cluster {target.cluster!r} does not "
                                 "route through HAProxy; use the prometheus provider")
            elif metric.provider == Provider.PROMETHEUS:
                try:
                    PrometheusClient(metric.address).check(target.fill(metric.query))
                except PrometheusError as error:
                    found.append(f"metric {metric.name!r}: {error}")
            elif metric.provider == Provider.WEB:
                try:
                    self.web_hosts.check(target.fill(metric.query))
                except WebHostRefused as refused:
                    found.append(f"metric {metric.name!r}: {refused}")
        return found

    def _router(self, target: AnalysisTarget) -> HaproxyRouter:
        cluster = target.cluster or self.default_cluster
        if cluster not in self.haproxy:
            raise LookupError(f"cluster {cluster!r} does not route through HAProxy")
        return self.haproxy[cluster]

    def _remote_reading(self, metric: Metric, target: AnalysisTarget) -> Reading:
        def ask(version: int) -> float | None:
            if metric.provider == Provider.PROMETHEUS:
                return PrometheusClient(metric.address).query(target.fill(metric.query, version))
            return read_field(target.fill(metric.query, version), metric.field,
                              hosts=self.web_hosts)

        try:
            value = ask(target.version)
            baseline = (ask(target.baseline_version)
                        if metric.compares_baseline and target.baseline_version else None)
        except (PrometheusError, WebMetricError) as error:
            return Reading(error=str(error))
        return Reading(value=value, baseline=baseline)


def _haproxy_reading(metric: Metric, target: AnalysisTarget,
                     counters: dict[int, VersionCounters | None],
                     since: Counters) -> Reading:
    canary = counters.get(target.version)
    if canary is None:
        return Reading(error=f"v{target.version} has no server in HAProxy")
    value, sample = figure(metric.query, canary.since(since.get(str(target.version))))
    baseline_value = None
    old = counters.get(target.baseline_version) if target.baseline_version else None
    if old is not None:
        baseline_value, _ = figure(metric.query, old.since(since.get(str(target.baseline_version))))
    return Reading(value=value, baseline=baseline_value, sample=sample)


class AnalysisActivities:
    def __init__(self, providers: MetricProviders, store: Store) -> None:
        self.providers = providers
        self.store = store

    @activity.defn
    def measure_analysis(self, data: MeasureInput) -> MeasureResult:
        """Measure the due metrics of a step and record them in the catalogue."""
        with heartbeating(f"measuring {', '.join(data.metrics)}"):
            result = self.providers.measure(data)
            if data.release_id:
                record_measurements(self.store, data.release_id, result.measurements)
            return result

    @activity.defn
    def check_analysis(self, data: CheckPolicyInput) -> None:
        """Refuse a policy its providers cannot measure, before anything changes."""
        with heartbeating("checking the analysis policy"):
            problems = self.providers.problems(data.policy, data.target)
        if problems:
            raise ApplicationError("bad analysis policy: " + "; ".join(problems),
                                   type="BadAnalysisPolicy", non_retryable=True)
