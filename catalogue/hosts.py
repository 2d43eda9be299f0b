"""Docker hosts taken out of placement (issue #28): a cordoned host gets no new replica.

The hosts themselves are configuration (``SLIPWAY_CLUSTERS``); the catalogue keeps only what
people decide about them, so every worker places the same way. What runs on a cordoned host
keeps running: cordoning moves nothing by itself.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel, select

from catalogue.store import Store, audit
from catalogue.tables import utcnow


class HostState(SQLModel, table=True):
    """What people decided about one host of a cluster."""

    __tablename__ = "host_state"
    __table_args__ = (UniqueConstraint("cluster", "host"),)

    id: int | None = Field(default=None, primary_key=True)
    cluster: str
    host: str
    cordoned: bool = False
    reason: str = ""
    changed_by: str = ""
    changed_at: datetime = Field(default_factory=utcnow)


def host_states(store: Store) -> dict[tuple[str, str], HostState]:
    """Every recorded state, by (cluster, host)."""
    with store.session() as session:
        return {(row.cluster, row.host): row for row in session.exec(select(HostState))}


def cordoned_hosts(store: Store, cluster: str) -> frozenset[str]:
    """Names of the cluster's hosts that get no new replica."""
    with store.session() as session:
        rows = session.exec(select(HostState).where(HostState.cluster == cluster,
                                                    HostState.cordoned == True))  # noqa: E712
        return frozenset(row.host for row in rows)


def set_cordoned(store: Store, cluster: str, host: str, cordoned: bool, reason: str,
                 actor: str) -> HostState:
    """Cordon (or uncordon) a host, audited as ``host.cordoned`` / ``host.uncordoned``."""
    with store.session() as session:
        row = session.exec(select(HostState).where(HostState.cluster == cluster,
                                                   HostState.host == host)).first()
        row = row or HostState(cluster=cluster, host=host)
        row.cordoned, row.reason, row.changed_by = cordoned, reason, actor
        row.changed_at = utcnow()
        session.add(row)
        audit(session, "host.cordoned" if cordoned else "host.uncordoned", actor=actor,
              cluster=cluster, host=host, reason=reason)
        session.commit()
        session.refresh(row)
        return row
