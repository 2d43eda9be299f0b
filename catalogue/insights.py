"""What the catalogue knows for release insights and Slipway's own metrics: each release as
a :class:`schemas.insights.ReleaseFact` (its change, build and approval wait joined in), and
the releases waiting for approval now.

Reads only; the measures are :mod:`schemas.dora`'s pure functions.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import or_
from sqlmodel import Session, col, select

from catalogue.store import Store, as_utc
from catalogue.tables import (
    AnalysisMeasurement,
    Application,
    AuditEvent,
    Build,
    Change,
    Environment,
    LaneRecord,
    Release,
)
from schemas.enums import ReleaseState
from schemas.insights import ReleaseFact
from schemas.lanes import FINISHED_STAGES, LaneStage

ASKED, APPROVED = "release.awaiting_approval", "release.approved"


def _approval_events(session: Session, release_ids: set[int],
                     earliest: datetime) -> dict[int, dict[str, datetime]]:
    """Per release: when it first asked for approval and when the approval came."""
    marks: dict[int, dict[str, datetime]] = defaultdict(dict)
    rows = session.exec(select(AuditEvent).where(
        col(AuditEvent.action).in_([ASKED, APPROVED]), AuditEvent.at >= earliest)
        .order_by(col(AuditEvent.at))).all()
    for row in rows:
        release_id = row.detail.get("release_id")
        if isinstance(release_id, int) and release_id in release_ids:
            marks[release_id].setdefault(row.action, as_utc(row.at))
    return marks


def _build_times(session: Session, releases: list[Release]) -> dict[int, datetime]:
    """Per release: when its build was recorded. Builds carry the release's workflow id, shared
    by every release of the environment, so the one recorded during the run is its own."""
    by_workflow: dict[str, list[datetime]] = defaultdict(list)
    ids = sorted({r.workflow_id for r in releases})
    for build in session.exec(select(Build).where(col(Build.workflow_id).in_(ids))).all():
        by_workflow[build.workflow_id].append(as_utc(build.created_at))
    found: dict[int, datetime] = {}
    for release in releases:
        start = as_utc(release.started_at)
        end = as_utc(release.finished_at) if release.finished_at else None
        during = [t for t in by_workflow[release.workflow_id]
                  if t >= start and (end is None or t <= end)]
        if during and release.id is not None:
            found[release.id] = min(during)
    return found


def release_facts(store: Store, since: datetime) -> list[ReleaseFact]:
    """Every release that finished at or after ``since`` or is still running, as facts."""
    with store.session() as session:
        rows = session.exec(
            select(Release, Application, Environment)
            .where(Release.app_id == Application.id, Release.env_id == Environment.id,
                   or_(col(Release.finished_at) >= since,
                       col(Release.finished_at).is_(None)))
            .order_by(col(Release.started_at), col(Release.id))).all()
        releases = [release for release, _app, _env in rows]
        change_ids = [r.change_id for r in releases if r.change_id is not None]
        changes = {c.id: c for c in session.exec(
            select(Change).where(col(Change.id).in_(change_ids))).all()}
        earliest = min((as_utc(r.started_at) for r in releases), default=since)
        approvals = _approval_events(session, {r.id for r in releases if r.id}, earliest)
        builds = _build_times(session, releases)
    facts = []
    for release, app, env in rows:
        change = changes.get(release.change_id)
        marks = approvals.get(release.id or 0, {})
        decided = marks.get(APPROVED)
        if decided is None and marks.get(ASKED) and release.state == ReleaseState.REJECTED:
            decided = as_utc(release.finished_at) if release.finished_at else None
        facts.append(ReleaseFact(
            release_id=release.id or 0, app=app.name, team=app.team, env=env.name,
            env_type=env.env_type, state=str(release.state), rollback=release.rollback,
            rollback_to=release.rollback_to, started_at=as_utc(release.started_at),
            finished_at=as_utc(release.finished_at) if release.finished_at else None,
            change_id=release.change_id,
            change_created_at=as_utc(change.created_at) if change else None,
            ref=change.ref if change else "", note=change.note if change else "",
            built_at=builds.get(release.id or 0), approval_asked_at=marks.get(ASKED),
            approval_decided_at=decided, error=release.error))
    return facts


class WaitingApproval(BaseModel):
    """A running release waiting for a person's approval, since when."""

    release_id: int
    app: str
    env: str
    since: datetime


def waiting_approvals(store: Store) -> list[WaitingApproval]:
    """The running releases that asked for approval and have not had it yet."""
    with store.session() as session:
        rows = session.exec(
            select(Release, Application, Environment)
            .where(Release.app_id == Application.id, Release.env_id == Environment.id,
                   Release.state == ReleaseState.RUNNING)).all()
        if not rows:
            return []
        earliest = min(as_utc(r.started_at) for r, _a, _e in rows)
        marks = _approval_events(session, {r.id for r, _a, _e in rows if r.id}, earliest)
    return [WaitingApproval(release_id=release.id or 0, app=app.name, env=env.name,
                            since=marks[release.id or 0][ASKED])
            for release, app, env in rows
            if ASKED in marks.get(release.id or 0, {})
            and APPROVED not in marks[release.id or 0]]


class CatalogueCounts(BaseModel):
    """Counts for Slipway's own metrics that are not per release."""

    lanes_active: int = 0
    lanes_expiring: int = 0  # pending deletion: their idle TTL has run out
    verdicts: dict[str, int] = {}
    audit_actions: dict[str, int] = {}


def catalogue_counts(store: Store, now: datetime, actions: list[str]) -> CatalogueCounts:
    """Lanes active and expiring, analysis verdicts so far, and how often each of
    ``actions`` was audited (reconciler repairs, janitor removals)."""
    counts = CatalogueCounts()
    with store.session() as session:
        for lane in session.exec(select(LaneRecord).where(
                col(LaneRecord.stage).not_in([str(s) for s in FINISHED_STAGES]))).all():
            counts.lanes_active += 1
            if lane.stage == LaneStage.PENDING_DELETION or (
                    lane.expires_at is not None and as_utc(lane.expires_at) <= now):
                counts.lanes_expiring += 1
        for measurement in session.exec(select(AnalysisMeasurement)).all():
            counts.verdicts[measurement.verdict] = counts.verdicts.get(measurement.verdict,
                                                                       0) + 1
        for event in session.exec(select(AuditEvent).where(
                col(AuditEvent.action).in_(actions))).all():
            counts.audit_actions[event.action] = counts.audit_actions.get(event.action, 0) + 1
    return counts
