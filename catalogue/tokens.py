"""Tables of the HTTP receiver: API tokens of its users, the webhook deliveries it has seen,
and the approval proofs spent.

Tokens are stored as SHA-256 hashes only: the clear value is printed once, when created, and
cannot be recovered from the store. Deliveries are remembered by (source, event id) so that a
redelivered webhook is a no-op.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from catalogue.tables import utcnow
from schemas.scopes import TokenScope

# read: the GET views; release: start releases, renew lanes; approve: approve or reject
# releases (the four-eyes rules still apply), add freezes and declare incident freezes;
# lane-admin: delete any lane, not only one's own; freeze-admin: lift (remove) a freeze or
# window; break-glass: release through a freeze (`release --break-glass`, which still needs
# a second approver); admin: shape the catalogue (applications, environments, analysis
# policies, tokens, schedules) and act `--as` another user (audited). The last four are never
# granted by default; starter/service/command_policy.py maps each command to its role.
ROLES = ("read", "release", "approve", "lane-admin", "freeze-admin", "break-glass", "admin")
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
    # Its scope (schemas.scopes), comma-separated: the applications and teams it may act on;
    # both empty: every application (tokens made before scopes existed).
    apps: str = ""
    teams: str = ""

    def role_set(self) -> frozenset[str]:
        return frozenset(role for role in self.roles.split(",") if role)

    def scope(self) -> TokenScope:
        return TokenScope.stored(self.apps, self.teams)


class HookDelivery(SQLModel, table=True):
    """One webhook delivery already handled, keyed by its source and event id."""

    __tablename__ = "hook_delivery"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    event_id: str
    kind: str = ""
    received_at: datetime = Field(default_factory=utcnow)


class ApprovalUse(SQLModel, table=True):
    """An approval proof that counted: its nonce, so the same proof never counts again, in
    this run or any other. Written by the verifying activity in the transaction that checks
    it (the unique nonce settles a race); never the proof or its signature."""

    __tablename__ = "approval_use"

    id: int | None = Field(default=None, primary_key=True)
    nonce: str = Field(unique=True, index=True)
    user: str
    workflow_id: str
    run_id: str
    decision: str
    via: str = ""
    token: str = ""  # the token's name
    # Who spent it: the verifying activity (workflow run + activity id), whose retry after a
    # lost answer is the same use, not a replay.
    used_by: str = ""
    used_at: datetime = Field(default_factory=utcnow)
