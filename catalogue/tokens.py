"""Tables of the HTTP receiver: API tokens of its users and the webhook deliveries it has seen.

Tokens are stored as SHA-256 hashes only: the clear value is printed once, when created, and
cannot be recovered from the store. Deliveries are remembered by (source, event id) so that a
redelivered webhook is a no-op.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from catalogue.tables import utcnow


class ApiToken(SQLModel, table=True):
    """A bearer token of the receiver: ``name`` identifies it, ``user`` is who it acts as."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    user: str
    # sha256 hex of the token; the token itself is never stored.
    hash: str = Field(unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked: bool = False
    revoked_at: datetime | None = None


class HookDelivery(SQLModel, table=True):
    """One webhook delivery already handled, keyed by its source and event id."""

    __tablename__ = "hook_delivery"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    event_id: str
    kind: str = ""
    received_at: datetime = Field(default_factory=utcnow)
