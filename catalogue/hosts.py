"""Docker hosts as the catalogue knows them: what their agents report, what people decide.

A host's agent (agent.py) registers its host when it starts and beats every few seconds
(address, engine, labels, capacity, last seen): a release reaches the hosts whose agent was
seen lately, each through its agent's task queue. A cordoned host gets no new replica; what
runs there keeps running: cordoning moves nothing by itself. A host whose agent stays away
longer than SLIPWAY_HOST_LOST_SECONDS leaves release plans; a worker marks it lost (and
cordoned) and starts the durable workflow that places its replicas again on the others
(workflows/host_drain.py). Back, it stays cordoned until a person drains and uncordons it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, col, select

from catalogue.store import CatalogueError, Store, as_utc, audit
from catalogue.tables import utcnow
from schemas.hosts import AgentRegistration
from schemas.models import PlanHost


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
    # What the host's agent reported (empty until an agent registered it).
    address: str = ""
    engine: str = ""
    labels: dict[str, str] = Field(default_factory=dict,
                                   sa_column=Column(JSON, nullable=False, default=dict))
    capacity: int = 0
    load_balancer: bool = False
    agent: str = ""
    last_seen: datetime | None = None
    # Its agent stayed away too long: its replicas were placed again on the other hosts.
    lost: bool = False


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


def register_agent(store: Store, seen: AgentRegistration) -> HostState:
    """An agent's beat: its host as it is now, seen now (the first one audited). The first
    beat after the host was lost is audited too (``host.back``): it stays cordoned."""
    with store.session() as session:
        row = session.exec(select(HostState).where(HostState.cluster == seen.cluster,
                                                   HostState.host == seen.host)).first()
        first = row is None or row.last_seen is None
        row = row or HostState(cluster=seen.cluster, host=seen.host)
        if row.lost:
            row.lost = False
            audit(session, "host.back", actor=seen.agent, cluster=seen.cluster, host=seen.host)
        row.address, row.engine, row.labels = seen.address, seen.engine, dict(seen.labels)
        row.capacity, row.load_balancer, row.agent = (seen.capacity, seen.load_balancer,
                                                      seen.agent)
        row.last_seen = utcnow()
        session.add(row)
        if first:
            audit(session, "host.registered", actor=seen.agent, cluster=seen.cluster,
                  host=seen.host, address=seen.address)
        session.commit()
        session.refresh(row)
        return row


def agent_hosts(session: Session, cluster: str, within: float) -> dict[str, object]:
    """A release plan's hosts (``hosts``, ``lb_host``) on a cluster whose agents registered:
    those seen within ``within`` seconds, by name. Empty when no agent ever registered a host
    of the cluster (its runtime runs in the workers); CatalogueError when every agent is
    away, or the load balancer's is."""
    rows = session.exec(select(HostState).where(
        HostState.cluster == cluster, col(HostState.last_seen).is_not(None))
        .order_by(col(HostState.host))).all()
    if not rows:
        return {}
    now = utcnow()
    live = [row for row in rows if not row.lost and row.last_seen is not None
            and (now - as_utc(row.last_seen)).total_seconds() <= within]
    away = ", ".join(f"{row.host} (last seen {as_utc(row.last_seen).isoformat(timespec='seconds')})"
                     for row in rows if row not in live and row.last_seen is not None)
    if not live:
        raise CatalogueError(f"no host agent of cluster {cluster} was seen in the last "
                             f"{within:.0f}s: {away}; start them (`slipway agent --host NAME`)")
    balancers = [row.host for row in rows if row.load_balancer]
    if balancers and balancers[0] not in {row.host for row in live}:
        raise CatalogueError(f"the agent of {balancers[0]}, cluster {cluster}'s load-balancer "
                             f"host, was not seen in the last {within:.0f}s: start it "
                             f"(`slipway agent --host {balancers[0]}`)")
    return {"hosts": [PlanHost(name=row.host, capacity=row.capacity, cordoned=row.cordoned)
                      for row in live],
            "lb_host": balancers[0] if balancers else live[0].host}


def lost_hosts(store: Store, within: float) -> list[HostState]:
    """Hosts whose agent registered once and was not seen for ``within`` seconds, not yet
    marked lost, in a cluster where another host's agent was seen lately and takes new
    replicas: a cluster's only host (one machine after `slipway down`, or a whole fleet
    coming back after an outage) has nowhere to move, so it is never marked lost."""
    cutoff = utcnow() - timedelta(seconds=within)
    with store.session() as session:
        rows = session.exec(select(HostState).where(
            col(HostState.last_seen).is_not(None))).all()
    seen = {row.cluster for row in rows if row.last_seen is not None and not row.lost
            and not row.cordoned and as_utc(row.last_seen) >= cutoff}
    return [row for row in rows if not row.lost and row.cluster in seen
            and row.last_seen is not None and as_utc(row.last_seen) < cutoff]


def mark_lost(store: Store, cluster: str, host: str) -> None:
    """The host's replicas are being placed again elsewhere: it is lost, and cordoned (its
    agent coming back puts nothing there until a person uncordons it)."""
    with store.session() as session:
        row = session.exec(select(HostState).where(HostState.cluster == cluster,
                                                   HostState.host == host)).first()
        if row is None or row.lost:
            return
        row.lost, row.cordoned = True, True
        row.reason = "its agent was away: replicas placed again on the other hosts"
        row.changed_by, row.changed_at = "slipway", utcnow()
        session.add(row)
        audit(session, "host.lost", actor="slipway", cluster=cluster, host=host)
        session.commit()
