"""Swimlanes in the catalogue: the row each lane's workflow keeps current, and the janitor's
search for rows whose workflow is gone.

Idempotent, keyed by the lane name: a retried ``record`` writes the same row again. A lane
name used again after its lane was deleted starts a fresh row (and a fresh ``created_at``).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import col, select

from catalogue.store import Store, audit
from catalogue.tables import LaneRecord, utcnow
from schemas.lanes import FINISHED_STAGES, LaneRecordInput, LaneStage


def record_lane(store: Store, data: LaneRecordInput) -> None:
    """Write the lane's row as ``data`` says; audit each stage change once."""
    with store.session() as session:
        row = session.exec(select(LaneRecord).where(LaneRecord.name == data.name)).first()
        if row is None or (row.stage in FINISHED_STAGES and data.stage == LaneStage.CREATING):
            row = row or LaneRecord(name=data.name, workflow_id=data.workflow_id)
            row.created_at = utcnow()
        changed = row.stage != data.stage or row.id is None
        row.workflow_id = data.workflow_id
        row.apps = list(data.apps)
        row.stage = data.stage
        row.expires_at = data.expires_at
        row.ticket, row.description = data.ticket, data.description
        row.requested_by = data.requested_by
        row.updated_at = utcnow()
        session.add(row)
        if changed:
            # A lane spans apps: the app column names them, the env column the lane.
            audit(session, f"lane.{data.stage}", actor=data.actor or "slipway",
                  app=",".join(data.apps), env=f"lane:{data.name}", lane=data.name,
                  apps=data.apps, ticket=data.ticket)
        session.commit()


def unfinished_lanes(store: Store) -> list[str]:
    """Names of lanes whose rows say they still exist (not deleted, failed or lost)."""
    with store.session() as session:
        rows = session.exec(select(LaneRecord).where(
            col(LaneRecord.stage).not_in([str(stage) for stage in FINISHED_STAGES]))).all()
    return sorted(row.name for row in rows)


def mark_lost(store: Store, alive: Callable[[str], bool]) -> list[str]:
    """Rows of unfinished lanes whose workflow is not running: mark them ``lost`` (so they
    are reported once, not every hour) and return their names."""
    lost = [name for name in unfinished_lanes(store) if not alive(name)]
    if not lost:
        return []
    with store.session() as session:
        for row in session.exec(select(LaneRecord).where(col(LaneRecord.name).in_(lost))):
            row.stage = LaneStage.LOST
            row.updated_at = utcnow()
            session.add(row)
            audit(session, "lane.lost", actor="janitor", app=",".join(row.apps),
                  env=f"lane:{row.name}", lane=row.name, apps=row.apps,
                  workflow_id=row.workflow_id)
        session.commit()
    return lost


def lane_owner(store: Store, name: str) -> str:
    """Who asked for lane ``name`` (empty when the catalogue has no record of it)."""
    with store.session() as session:
        row = session.exec(select(LaneRecord).where(LaneRecord.name == name)
                           .order_by(col(LaneRecord.id).desc())).first()
    return row.requested_by if row else ""
