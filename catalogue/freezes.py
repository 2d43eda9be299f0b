"""Freezes and deploy windows in the catalogue: add, list, lift, and the verdict for an
environment now (schemas.freezes holds the rules' logic)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import col, select

from catalogue.store import CatalogueError, Store, as_utc, audit
from catalogue.tables import Application, Environment, FreezeRecord
from schemas.freezes import FreezeRule, FreezeVerdict, RuleKind, gate


def _rule(row: FreezeRecord) -> FreezeRule:
    return FreezeRule(id=row.id, kind=RuleKind(row.kind), scope=row.scope, reason=row.reason,
                      starts_at=as_utc(row.starts_at),
                      ends_at=as_utc(row.ends_at) if row.ends_at else None, rrule=row.rrule,
                      duration_seconds=row.duration_seconds, timezone=row.timezone,
                      created_by=row.created_by, incident=row.incident)


def add_rule(store: Store, rule: FreezeRule, actor: str) -> FreezeRule:
    """Store a freeze or window (already validated by FreezeRule) and audit it."""
    with store.session() as session:
        row = FreezeRecord(kind=str(rule.kind), scope=rule.scope, reason=rule.reason,
                           starts_at=rule.starts_at.astimezone(UTC),
                           ends_at=rule.ends_at.astimezone(UTC) if rule.ends_at else None,
                           rrule=rule.rrule, duration_seconds=rule.duration_seconds,
                           timezone=rule.timezone, incident=rule.incident, created_by=actor)
        session.add(row)
        session.flush()
        audit(session, "freeze.added", actor=actor, env=rule.scope, id=row.id, kind=str(rule.kind),
              rule=_rule(row).describe(), reason=rule.reason, incident=rule.incident)
        session.commit()
        session.refresh(row)
        return _rule(row)


def rules(store: Store, now: datetime | None = None) -> list[FreezeRule]:
    """Every rule still in force at ``now`` or later (past one-off intervals are left out)."""
    now = now or datetime.now(UTC)
    with store.session() as session:
        rows = session.exec(select(FreezeRecord).order_by(col(FreezeRecord.id))).all()
        found = [_rule(row) for row in rows]
    return [rule for rule in found if rule.rrule or rule.ends_at is None or rule.ends_at > now]


def find_rule(store: Store, rule_id: int) -> FreezeRule:
    """The freeze or window ``rule_id``; CatalogueError when there is no such rule."""
    with store.session() as session:
        row = session.get(FreezeRecord, rule_id) if 0 < rule_id < 2**63 else None
        if row is None:
            raise CatalogueError(f"no freeze or window #{rule_id}: see `slipway freeze list`")
        return _rule(row)


def apps_under(store: Store, rule: FreezeRule) -> list[str]:
    """The applications with an environment in ``rule``'s scope: those it holds or lets go."""
    with store.session() as session:
        rows = session.exec(select(Application.name, Environment.env_type, Environment.cluster)
                            .join(Environment, col(Environment.app_id) == Application.id)
                            .order_by(col(Application.name))).all()
    return list(dict.fromkeys(name for name, env_type, cluster in rows
                              if rule.applies_to(env_type, cluster)))


def remove_rule(store: Store, rule_id: int, actor: str) -> FreezeRule:
    """Lift a freeze or remove a window; CatalogueError when there is no such rule."""
    with store.session() as session:
        row = session.get(FreezeRecord, rule_id) if 0 < rule_id < 2**63 else None
        if row is None:
            raise CatalogueError(f"no freeze or window #{rule_id}: see `slipway freeze list`")
        removed = _rule(row)
        session.delete(row)
        audit(session, "freeze.removed", actor=actor, env=removed.scope, id=rule_id,
              rule=removed.describe(), reason=removed.reason)
        session.commit()
        return removed


def verdict_for(store: Store, env_type: str, cluster: str,
                now: datetime | None = None) -> FreezeVerdict:
    """May ``env_type@cluster`` be released into at ``now``?"""
    now = now or datetime.now(UTC)
    return gate(rules(store, now), env_type, cluster, now)
