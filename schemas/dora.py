"""The DORA measures and release durations, as pure functions of release facts.

Each measure is one function over :class:`schemas.insights.ReleaseFact` lists, so that a test
can hand it a made-up history and compare with figures worked out by hand; ``docs/insights.md``
states the same definitions in words. :func:`report` puts them together per group (every
release, each application, team and environment type) for one window.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from schemas.insights import (
    ATTEMPTED_STATES,
    Failure,
    GroupInsights,
    InsightsReport,
    ReleaseFact,
    Spread,
    WeekPoint,
)

WEEK_SECONDS = 7 * 24 * 3600
# A change whose ref or note says hotfix is a fix of what ran before it.
HOTFIX = re.compile(r"(^|[^a-z])hot-?fix([^a-z]|$)", re.IGNORECASE)
STAGES = ("build", "approval", "rollout", "total")
NO_TEAM = "(none)"


def spread(values: Iterable[float]) -> Spread:
    """Median (the middle value, or the mean of the two middle ones) and 90th percentile by
    nearest rank (the smallest value with at least 90 % of the values at or below it)."""
    ordered = sorted(values)
    if not ordered:
        return Spread()
    rank = math.ceil(0.9 * len(ordered))
    return Spread(count=len(ordered), median=float(statistics.median(ordered)),
                  p90=float(ordered[rank - 1]))


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def _finished_in(fact: ReleaseFact, since: datetime, until: datetime) -> bool:
    return fact.finished_at is not None and since <= fact.finished_at < until


def is_deployment(fact: ReleaseFact) -> bool:
    """A release that put a new version (or new resources) into service: succeeded, and not a
    return to an older baseline (that restores, it delivers nothing new)."""
    return fact.state == "succeeded" and fact.rollback_to is None


def deployments(facts: list[ReleaseFact], since: datetime, until: datetime) -> list[ReleaseFact]:
    """Deployment frequency: the deployments that finished within [since, until)."""
    return [f for f in facts if is_deployment(f) and _finished_in(f, since, until)]


def per_week(count: int, window_seconds: int) -> float:
    """``count`` events over a window, as a rate per week (rounded to 2 places)."""
    return round(count * WEEK_SECONDS / window_seconds, 2) if window_seconds > 0 else 0.0


def lead_time(fact: ReleaseFact) -> float | None:
    """Commit → serving: from the commit the change carries (else, when the commit time is
    unknown, the change's creation) to the end of the release that put it in service."""
    start = fact.commit_at or fact.change_created_at
    if not is_deployment(fact) or fact.finished_at is None or start is None:
        return None
    return _seconds(start, fact.finished_at)


def lead_times(facts: list[ReleaseFact], since: datetime, until: datetime) -> list[float]:
    """The lead time of every deployment in the window that has one."""
    return [t for f in deployments(facts, since, until) if (t := lead_time(f)) is not None]


def _by_env(facts: list[ReleaseFact]) -> dict[str, list[ReleaseFact]]:
    envs: dict[str, list[ReleaseFact]] = defaultdict(list)
    for fact in sorted(facts, key=lambda f: (f.started_at, f.release_id)):
        envs[f"{fact.app} {fact.env}"].append(fact)
    return envs


def _is_fix(fact: ReleaseFact) -> bool:
    return fact.rollback or bool(HOTFIX.search(fact.ref) or HOTFIX.search(fact.note))


def _next_attempt(fact: ReleaseFact, later: list[ReleaseFact]) -> ReleaseFact | None:
    """The first release on the same environment after ``fact`` ended that rolled out (or is
    rolling out): rejected and expired releases changed nothing, so they are passed over."""
    assert fact.finished_at is not None
    for other in later:
        if other.started_at >= fact.finished_at and (
                other.state in ATTEMPTED_STATES or other.state == "running"):
            return other
    return None


def failures(facts: list[ReleaseFact], since: datetime, until: datetime,
             failure_window: timedelta) -> tuple[int, list[Failure]]:
    """Change failure rate's two counts: the attempts (releases that finished in the window
    having rolled out a change: succeeded, rolled back or failed; returns to an older baseline
    excluded), and the failed ones among them with their cause: ``rolled back`` (its own undo),
    ``failed`` (the undo failed too), or, for a succeeded one, the next release on the same
    environment starting within ``failure_window`` of its end being a rollback (``rolled back
    later``) or a fix (``fixed forward``: a ``rollback --image``, or a hotfix ref or note)."""
    attempts = 0
    found: list[Failure] = []
    for env_facts in _by_env(facts).values():
        for i, fact in enumerate(env_facts):
            if fact.rollback_to is not None or fact.state not in ATTEMPTED_STATES \
                    or not _finished_in(fact, since, until):
                continue
            assert fact.finished_at is not None
            attempts += 1
            cause = {"rolled_back": "rolled back", "failed": "failed"}.get(fact.state, "")
            after = _next_attempt(fact, env_facts[i + 1:])
            if not cause and after is not None and _is_fix(after) \
                    and after.started_at - fact.finished_at <= failure_window:
                cause = "rolled back later" if after.rollback_to is not None else "fixed forward"
            if cause:
                found.append(Failure(release_id=fact.release_id, app=fact.app, env=fact.env,
                                     cause=cause, at=fact.finished_at,
                                     detail=fact.error or (f"release {after.release_id}"
                                                           if after else "")))
    return attempts, found


def restore_times(facts: list[ReleaseFact], found: list[Failure]) -> tuple[list[float], int]:
    """Time to restore, for the failures that left an environment serving a bad version (a
    ``failed`` release, or a succeeded one rolled back or fixed later): from the failing
    release's end to the end of the next succeeded release on the same environment. Failures
    that are not restored yet have no time; ``rolled back`` ones restored themselves within
    their own run and are counted apart (the second value)."""
    envs = _by_env(facts)
    times: list[float] = []
    self_restored = 0
    for failure in found:
        if failure.cause == "rolled back":
            self_restored += 1
            continue
        restored = [f.finished_at for f in envs[f"{failure.app} {failure.env}"]
                    if f.state == "succeeded" and f.finished_at is not None
                    and f.finished_at > failure.at]
        if restored:
            times.append(_seconds(failure.at, min(restored)))
    return times, self_restored


def stage_durations(facts: list[ReleaseFact], since: datetime,
                    until: datetime) -> dict[str, list[float]]:
    """Per stage, the durations of the releases that finished in the window: ``build`` (start
    → build recorded), ``approval`` (asked → decided, or → the release's end when no one
    decided), ``rollout`` (the later of start, build and approval → end, for releases that
    rolled out) and ``total`` (start → end)."""
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for fact in facts:
        if not _finished_in(fact, since, until):
            continue
        assert fact.finished_at is not None
        stages["total"].append(_seconds(fact.started_at, fact.finished_at))
        if fact.built_at is not None:
            stages["build"].append(_seconds(fact.started_at, fact.built_at))
        if fact.approval_asked_at is not None:
            stages["approval"].append(_seconds(
                fact.approval_asked_at, fact.approval_decided_at or fact.finished_at))
        if fact.state in ATTEMPTED_STATES:
            begun = max(t for t in (fact.started_at, fact.built_at, fact.approval_decided_at)
                        if t is not None)
            stages["rollout"].append(_seconds(begun, fact.finished_at))
    return stages


def iso_week(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


def weekly_trend(facts: list[ReleaseFact], since: datetime, until: datetime,
                 found: list[Failure]) -> list[WeekPoint]:
    """Deployments, failed changes and the median lead time per ISO week of the window."""
    points: dict[str, WeekPoint] = {}
    day = since
    while day < until:
        points.setdefault(iso_week(day), WeekPoint(week=iso_week(day)))
        day += timedelta(days=1)
    lead: dict[str, list[float]] = defaultdict(list)
    for fact in deployments(facts, since, until):
        assert fact.finished_at is not None
        week = points.setdefault(iso_week(fact.finished_at),
                                 WeekPoint(week=iso_week(fact.finished_at)))
        week.deployments += 1
        if (t := lead_time(fact)) is not None:
            lead[week.week].append(t)
    for failure in found:
        points.setdefault(iso_week(failure.at), WeekPoint(week=iso_week(failure.at))).failures += 1
    for name, values in lead.items():
        points[name].lead_time_median = spread(values).median
    return [points[name] for name in sorted(points)]


def measure_group(by: str, name: str, facts: list[ReleaseFact], since: datetime,
                  until: datetime, failure_window: timedelta) -> GroupInsights:
    """The four measures and the stage durations of ``facts`` (one group) in the window."""
    window = int(_seconds(since, until))
    done = deployments(facts, since, until)
    attempts, found = failures(facts, since, until, failure_window)
    restores, self_restored = restore_times(facts, found)
    return GroupInsights(
        by=by, name=name, deployments=len(done), deployments_per_week=per_week(len(done), window),
        lead_time=spread(lead_times(facts, since, until)), attempts=attempts,
        failures=len(found),
        change_failure_rate=round(len(found) / attempts, 4) if attempts else None,
        restore_time=spread(restores), self_restored=self_restored,
        stages={stage: spread(values)
                for stage, values in stage_durations(facts, since, until).items()})


GROUPINGS: dict[str, Callable[[ReleaseFact], str]] = {
    "app": lambda f: f.app,
    "team": lambda f: f.team or NO_TEAM,
    "env_type": lambda f: f.env_type,
}


def report(facts: list[ReleaseFact], since: datetime, until: datetime,
           failure_window: timedelta, filters: dict[str, str] | None = None) -> InsightsReport:
    """Every group's measures over [since, until): all releases first, then per application,
    team and environment type; with the weekly trend, every lead time and every failure."""
    groups = [measure_group("all", "all", facts, since, until, failure_window)]
    for by, key in GROUPINGS.items():
        members: dict[str, list[ReleaseFact]] = defaultdict(list)
        for fact in facts:
            members[key(fact)].append(fact)
        groups += [measure_group(by, name, members[name], since, until, failure_window)
                   for name in sorted(members)]
    _, found = failures(facts, since, until, failure_window)
    return InsightsReport(
        since=since, until=until, window_seconds=int(_seconds(since, until)),
        failure_window_seconds=int(failure_window.total_seconds()), filters=filters or {},
        groups=[g for g in groups if g.by == "all" or g.attempts or g.deployments
                or g.stages["total"].count],
        trend=weekly_trend(facts, since, until, found),
        lead_times=sorted(lead_times(facts, since, until)), failures=found)
