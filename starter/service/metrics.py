"""Slipway's own metrics, computed from the catalogue each time Prometheus scrapes the server
(``GET /metrics``): releases by outcome, running releases, approvals waiting and their age,
stage durations, lanes active and expiring, analysis verdicts, lanes the janitor found lost,
and the DORA figures per application. The catalogue is the truth every worker writes to, so
one scrape of one server sees the whole fleet, whichever worker ran what.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlmodel import select

from catalogue.insights import catalogue_counts, release_facts, waiting_approvals
from catalogue.store import Store
from catalogue.tables import Application, Environment, Release
from integrations.commits import commit_time
from schemas.dora import spread, stage_durations
from starter.service.insights import InsightsQuery, insights

# Stage durations and DORA figures are over this window back from the scrape.
STAGE_WINDOW = timedelta(days=1)
DORA_WINDOW = timedelta(days=30)
JANITOR_LOST = "lane.lost"


@functools.lru_cache(maxsize=4096)
def _cached_commit_time(source: str, ref: str) -> datetime | None:
    # A scrape every few seconds must not run git for refs it has seen.
    return commit_time(source, ref)


class CatalogueCollector(Collector):
    """A Prometheus collector reading the catalogue on every scrape."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        now = datetime.now(UTC)
        yield from self._releases()
        yield from self._approvals(now)
        yield from self._stages(now)
        yield from self._counts(now)
        yield from self._dora(now)

    def _releases(self) -> Iterator[Metric]:
        outcomes = CounterMetricFamily(
            "slipway_releases", "Releases that ended, by application, environment type and "
            "outcome (succeeded, rolled_back, failed, rejected, approval_expired).",
            labels=["app", "env_type", "outcome"])
        running = GaugeMetricFamily("slipway_releases_running", "Releases running now.",
                                    labels=["app", "env"])
        with self.store.session() as session:
            rows = session.exec(select(Release.state, Application.name, Environment.env_type,
                                       Environment.cluster)
                                .where(Release.app_id == Application.id,
                                       Release.env_id == Environment.id)).all()
        ended: Counter[tuple[str, str, str]] = Counter()
        live: Counter[tuple[str, str]] = Counter()
        for state, app, env_type, cluster in rows:
            if state == "running":
                live[app, f"{env_type}@{cluster}"] += 1
            else:
                ended[app, env_type, str(state)] += 1
        for labels, count in sorted(ended.items()):
            outcomes.add_metric(list(labels), count)
        for env_labels, count in sorted(live.items()):
            running.add_metric(list(env_labels), count)
        yield outcomes
        yield running

    def _approvals(self, now: datetime) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "slipway_approvals_waiting", "Running releases waiting for a person's approval.",
            labels=["app", "env"])
        age = GaugeMetricFamily(
            "slipway_approval_wait_age_seconds", "How long each release waiting for approval "
            "has waited so far.", labels=["app", "env", "release_id"])
        for wait in waiting_approvals(self.store):
            waiting.add_metric([wait.app, wait.env], 1)
            age.add_metric([wait.app, wait.env, str(wait.release_id)],
                           (now - wait.since).total_seconds())
        yield waiting
        yield age

    def _stages(self, now: datetime) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "slipway_release_stage_seconds", "Duration of the stages of the releases that "
            "ended in the last day: build, approval (wait), rollout, total; median, p90 and "
            "how many.",
            labels=["stage", "statistic"])
        since = now - STAGE_WINDOW
        for stage, values in stage_durations(release_facts(self.store, since), since,
                                             now).items():
            figure = spread(values)
            if figure.median is None or figure.p90 is None:
                continue
            family.add_metric([stage, "median"], figure.median)
            family.add_metric([stage, "p90"], figure.p90)
            family.add_metric([stage, "count"], figure.count)
        yield family

    def _counts(self, now: datetime) -> Iterator[Metric]:
        counts = catalogue_counts(self.store, now, [JANITOR_LOST])
        yield GaugeMetricFamily("slipway_lanes_active", "Swimlanes not yet deleted.",
                                value=counts.lanes_active)
        yield GaugeMetricFamily("slipway_lanes_expiring", "Swimlanes whose idle TTL ran out "
                                "(pending deletion unless renewed).", value=counts.lanes_expiring)
        verdicts = CounterMetricFamily("slipway_analysis_verdicts", "Canary-analysis "
                                       "measurements, by verdict.", labels=["verdict"])
        for verdict, count in sorted(counts.verdicts.items()):
            verdicts.add_metric([verdict], count)
        yield verdicts
        yield CounterMetricFamily("slipway_janitor_lanes_lost", "Lanes the janitor found "
                                  "without their workflow.",
                                  value=counts.audit_actions.get(JANITOR_LOST, 0))

    def _dora(self, now: datetime) -> Iterator[Metric]:
        found = insights(self.store, InsightsQuery(since_seconds=int(DORA_WINDOW
                                                                     .total_seconds())),
                         now=now, lookup=_cached_commit_time)
        help_window = "over the last 30 days"
        families = {
            "deployments": GaugeMetricFamily(
                "slipway_dora_deployments", f"Deployments {help_window}.", labels=["app"]),
            "lead": GaugeMetricFamily(
                "slipway_dora_lead_time_median_seconds",
                f"Median lead time for changes {help_window}.", labels=["app"]),
            "cfr": GaugeMetricFamily(
                "slipway_dora_change_failure_ratio", f"Change failure rate {help_window}.",
                labels=["app"]),
            "restore": GaugeMetricFamily(
                "slipway_dora_restore_median_seconds",
                f"Median time to restore {help_window}.", labels=["app"]),
        }
        for group in found.groups:
            if group.by not in ("all", "app"):
                continue
            labels = [group.name]  # "all" for every application
            families["deployments"].add_metric(labels, group.deployments)
            if group.lead_time.median is not None:
                families["lead"].add_metric(labels, group.lead_time.median)
            if group.change_failure_rate is not None:
                families["cfr"].add_metric(labels, group.change_failure_rate)
            if group.restore_time.median is not None:
                families["restore"].add_metric(labels, group.restore_time.median)
        yield from families.values()


def exposition(store: Store) -> bytes:
    """The metrics in Prometheus' text format, read from the catalogue now."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CatalogueCollector(store))
    return generate_latest(registry)
