"""The load balancers' intent in the catalogue (issue #28, fleet): each environment key's
frontend (port, health path) and backend servers (address, port, weight, ready or draining),
as the router last set them.

Kept here rather than in a file on the load-balancer host, so a replacement host with the same
catalogue rebuilds every HAProxy config and daemon from it (the reconciler discovers the keys
here). :class:`CatalogueIntent` is the router's ``IntentStore``
(``integrations.haproxy.intent``), passed to it by the worker; the integrations never import
the catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import UniqueConstraint, delete
from sqlmodel import Field, SQLModel, col, select

from catalogue.store import Store
from catalogue.tables import utcnow
from schemas.lb_intent import FrontendIntent, ServerIntent


class LbFrontend(SQLModel, table=True):
    """Where an environment key's load balancer listens."""

    __tablename__ = "lb_frontend"

    env_key: str = Field(primary_key=True)
    bind_port: int
    health_path: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class LbServerIntent(SQLModel, table=True):
    """One backend server of an environment key's load balancer."""

    __tablename__ = "lb_server_intent"
    __table_args__ = (UniqueConstraint("env_key", "server"),)

    id: int | None = Field(default=None, primary_key=True)
    env_key: str = Field(index=True)
    server: str
    address: str
    port: int
    weight: int
    state: str  # "ready" | "drain"


class CatalogueIntent:
    """``IntentStore`` over the catalogue: ``HaproxyRouter(..., intent=CatalogueIntent(store))``
    and the reconciler built on that router."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def read(self, key: str) -> dict[str, ServerIntent]:
        with self.store.session() as session:
            rows = session.exec(select(LbServerIntent).where(LbServerIntent.env_key == key))
            return {row.server: ServerIntent(address=row.address, port=row.port,
                                             weight=row.weight, state=row.state)
                    for row in rows}

    def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
        """Replace the key's rows in one transaction: readers see the old set or the new."""
        with self.store.session() as session:
            session.exec(delete(LbServerIntent).where(col(LbServerIntent.env_key) == key))
            session.add_all(LbServerIntent(env_key=key, server=name, address=entry.address,
                                           port=entry.port, weight=entry.weight,
                                           state=entry.state)
                            for name, entry in sorted(servers.items()))
            session.commit()

    def keys(self) -> list[str]:
        with self.store.session() as session:
            frontends = session.exec(select(LbFrontend.env_key)).all()
            served = session.exec(select(LbServerIntent.env_key).distinct()).all()
        return sorted({*frontends, *served})

    def frontend(self, key: str) -> FrontendIntent | None:
        with self.store.session() as session:
            row = session.get(LbFrontend, key)
            return None if row is None else FrontendIntent(bind_port=row.bind_port,
                                                           health_path=row.health_path)

    def set_frontend(self, key: str, frontend: FrontendIntent) -> None:
        with self.store.session() as session:
            row = session.get(LbFrontend, key) or LbFrontend(env_key=key, bind_port=0)
            row.bind_port, row.health_path = frontend.bind_port, frontend.health_path
            row.updated_at = utcnow()
            session.add(row)
            session.commit()

    def forget(self, key: str) -> None:
        """The key's frontend and servers, in one transaction."""
        with self.store.session() as session:
            session.exec(delete(LbServerIntent).where(col(LbServerIntent.env_key) == key))
            session.exec(delete(LbFrontend).where(col(LbFrontend.env_key) == key))
            session.commit()
