"""API tokens of the receiver's users: created once, stored as SHA-256 hashes, revocable."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlmodel import select

from catalogue.store import CatalogueError, Store, audit
from catalogue.tables import utcnow
from catalogue.tokens import DEFAULT_ROLES, ROLES, ApiToken
from schemas.identities import same_person
from starter.service.identity import check_user

TOKEN_PREFIX = "slw_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who a request's bearer token acts as, and what it may do."""

    user: str
    token: str  # the token's name, never its value
    # Its SHA-256: combined with the approval signing secret (which the catalogue does not
    # hold), the key approval proofs are signed with (schemas.approvals.proof_key).
    hash: str
    roles: frozenset[str]


def check_roles(roles: list[str]) -> str:
    """The roles as stored (comma-separated); CatalogueError naming the valid ones."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise CatalogueError(f"unknown role {', '.join(unknown) or '(none)'}: use "
                             f"{', '.join(ROLES)}")
    return ",".join(role for role in ROLES if role in roles)


def create_token(store: Store, user: str, name: str = "", actor: str = "",
                 roles: list[str] | None = None) -> tuple[str, str]:
    """A new token acting as ``user``; returns (name, clear token). The clear token is shown
    to the caller once and never stored."""
    check_user(user, "token user")
    stored_roles = check_roles(roles) if roles else DEFAULT_ROLES
    if name:
        check_user(name, "token name")
    name = name or user
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session() as session:
        active = session.exec(select(ApiToken).where(
            ApiToken.name == name, ApiToken.revoked == False)).first()  # noqa: E712
        if active is not None:
            raise CatalogueError(f"an active token named {name!r} exists: revoke it first "
                                 f"(`slipway token revoke {name}`) or pass --name")
        session.add(ApiToken(name=name, user=user, hash=hash_token(token), roles=stored_roles))
        audit(session, "token.create", actor=actor, name=name, user=user, roles=stored_roles)
        session.commit()
    return name, token


def revoke_token(store: Store, name: str, actor: str = "") -> int:
    """Revoke every active token named ``name``; returns how many were revoked."""
    with store.session() as session:
        tokens = session.exec(select(ApiToken).where(
            ApiToken.name == name, ApiToken.revoked == False)).all()  # noqa: E712
        if not tokens:
            raise CatalogueError(f"no active token named {name!r}")
        for token in tokens:
            token.revoked = True
            token.revoked_at = utcnow()
            session.add(token)
        audit(session, "token.revoke", actor=actor, name=name)
        session.commit()
        return len(tokens)


def caller_for_token(store: Store, token: str) -> Caller | None:
    """Who an active token acts as, or None. Looks up by hash: the lookup key is not the
    secret, and an index hit leaks nothing a timing attacker could use."""
    if not token:
        return None
    digest = hash_token(token)
    with store.session() as session:
        row = session.exec(select(ApiToken).where(
            ApiToken.hash == digest, ApiToken.revoked == False)).first()  # noqa: E712
    return Caller(row.user, row.name, digest, row.role_set()) if row else None


def caller_with_role(store: Store, token: str, role: str, what: str, acting_as: str,
                     ) -> Caller:
    """The caller behind ``token`` (the CLI's SLIPWAY_TOKEN or --token-file) when it is
    active, carries ``role`` and acts as ``acting_as``; else CatalogueError saying how to get
    one, recorded as a ``cli.refused`` audit event (never with the token)."""
    how = (f"an admin creates one with `slipway token create {acting_as} --role {role}` "
           f"(add --name {acting_as}-{role} when {acting_as} has a token already)")
    caller = caller_for_token(store, token) if token else None
    if not token:
        reason = (f"{what} needs an API token with the {role} role in SLIPWAY_TOKEN or "
                  f"--token-file: {how}")
    elif caller is None:
        reason = (f"{what} needs an API token with the {role} role; the one given is unknown "
                  f"or revoked: {how}")
    elif role not in caller.roles:
        reason = (f"{what} needs the {role} role; token {caller.token} of {caller.user} has "
                  f"{', '.join(sorted(caller.roles)) or 'none'}: {how}")
    elif not same_person(caller.user, acting_as):
        reason = (f"{what}: the token given acts as {caller.user}, but you act as "
                  f"{acting_as} (SLIPWAY_USER): use your own token, or set SLIPWAY_USER")
    else:
        return caller
    with store.session() as session:
        audit(session, "cli.refused", actor=acting_as, refused=what, role=role,
              reason=reason, door="cli")
        session.commit()
    raise CatalogueError(reason)


def user_for_token(store: Store, token: str) -> str | None:
    """The user an active token acts as, or None."""
    caller = caller_for_token(store, token)
    return caller.user if caller else None
