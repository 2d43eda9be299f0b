"""The change calendar: every release across applications in a window, for change reviews."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from sqlmodel import col, select

from catalogue.store import Store
from catalogue.tables import Application, Baseline, Environment, Release


class CalendarEntry(BaseModel):
    """One release: what changed where, who asked and approved, and how it ended."""

    release_id: int
    app: str
    env: str
    state: str
    from_version: int
    to_version: int
    baseline_version: int | None
    image: str
    rollback: bool
    requested_by: str
    approved_by: str
    started_at: datetime
    finished_at: datetime | None
    error: str


def change_calendar(store: Store, since_seconds: int,
                    now: datetime | None = None) -> list[CalendarEntry]:
    """Releases of every application started within ``since_seconds``, newest first."""
    start = (now or datetime.now(UTC)) - timedelta(seconds=since_seconds)
    with store.session() as session:
        rows = session.exec(
            select(Release, Application, Environment)
            .where(Release.app_id == Application.id, Release.env_id == Environment.id,
                   Release.started_at >= start)
            .order_by(col(Release.started_at).desc(), col(Release.id).desc())).all()
        written = {b.release_id: b.version for b in session.exec(
            select(Baseline).where(col(Baseline.release_id).in_([r.id for r, _a, _e in rows])))}
        return [CalendarEntry(
            release_id=release.id or 0, app=app.name, env=env.name, state=str(release.state),
            from_version=release.from_version, to_version=release.to_version,
            baseline_version=written.get(release.id), image=release.image,
            rollback=release.rollback or release.rollback_to is not None,
            requested_by=release.requested_by, approved_by=release.approved_by,
            started_at=release.started_at, finished_at=release.finished_at, error=release.error)
            for release, app, env in rows]
