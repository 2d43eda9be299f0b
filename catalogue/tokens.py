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

# read: the GET views; release: start releases, renew lanes; approve: approve or reject
# releases (the four-eyes rules still apply); lane-admin: delete any lane, not only one's own.
ROLES = ("read", "release", "approve", "lane-admin")
DEFAULT_ROLES = "read,release,approve"


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
    # Comma-separated roles (see ROLES): what the token may do through the receiver.
    roles: str = DEFAULT_ROLES

    def role_set(self) -> frozenset[str]:
        return frozenset(role for role in self.roles.split(",") if role)


class HookDelivery(SQLModel, table=True):
    """One webhook delivery already handled, keyed by its source and event id."""

    __tablename__ = "hook_delivery"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    event_id: str
    kind: str = ""
    received_at: datetime = Field(default_factory=utcnow)
