"""API tokens of the receiver's users: created once, stored as SHA-256 hashes, revocable;
each with roles (what it may do) and a scope (on which applications: schemas.scopes)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select

from catalogue.scopes import outside_scope
from catalogue.store import CatalogueError, Store, audit, find_app
from catalogue.tables import Application, utcnow
from catalogue.tokens import DEFAULT_ROLES, ROLES, ApiToken
from schemas.identities import same_person
from schemas.scopes import TokenScope, out_of_scope
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
    # The applications it may act on (default: every one).
    scope: TokenScope = TokenScope()


TEAM_MAX = 40
_TEAM = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def check_team(team: str, what: str = "team") -> str:
    """``team`` when it is a lowercase label, else CatalogueError saying what to use."""
    if len(team) > TEAM_MAX or not _TEAM.fullmatch(team):
        raise CatalogueError(f"invalid {what} {team!r}: use a lowercase label of at most "
                             f"{TEAM_MAX} characters (a-z, 0-9 and '-'), e.g. payments")
    return team


def check_scope(store: Store, apps: list[str], teams: list[str]) -> TokenScope:
    """The scope of a new token: ``apps`` must be registered and ``teams`` must own at least
    one application (a misspelt name would make a token that covers nothing)."""
    for team in teams:
        check_team(team, "--team")
    with store.session() as session:
        for app in apps:
            find_app(session, app)
        if teams:
            owned = set(session.exec(select(Application.team).where(
                col(Application.team).in_(teams))).all())
            unknown = [team for team in teams if team not in owned]
            if unknown:
                raise CatalogueError(f"no application belongs to team {', '.join(unknown)}: "
                                     "register one with `slipway app register NAME --team "
                                     f"{unknown[0]}` or `slipway app set-team APP "
                                     f"{unknown[0]}`")
    return TokenScope(frozenset(apps), frozenset(teams))


def check_roles(roles: list[str]) -> str:
    """The roles as stored (comma-separated); CatalogueError naming the valid ones."""
    unknown = [role for role in roles if role not in ROLES]
    if unknown or not roles:
        raise CatalogueError(f"unknown role {', '.join(unknown) or '(none)'}: use "
                             f"{', '.join(ROLES)}")
    return ",".join(role for role in ROLES if role in roles)


def create_token(store: Store, user: str, name: str = "", actor: str = "",
                 roles: list[str] | None = None, apps: list[str] | None = None,
                 teams: list[str] | None = None) -> tuple[str, str]:
    """A new token acting as ``user``; returns (name, clear token). The clear token is shown
    to the caller once and never stored. ``apps`` and ``teams`` limit it to those
    applications (and every application of those teams); neither: every application."""
    check_user(user, "token user")
    stored_roles = check_roles(roles) if roles else DEFAULT_ROLES
    scope = check_scope(store, list(dict.fromkeys(apps or [])),
                        list(dict.fromkeys(teams or [])))
    stored_apps, stored_teams = ",".join(sorted(scope.apps)), ",".join(sorted(scope.teams))
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
        session.add(ApiToken(name=name, user=user, hash=hash_token(token), roles=stored_roles,
                             apps=stored_apps, teams=stored_teams))
        audit(session, "token.create", actor=actor, name=name, user=user, roles=stored_roles,
              scope=scope.describe())
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
    return Caller(row.user, row.name, digest, row.role_set(), row.scope()) if row else None


def scope_refusal(store: Store, caller: Caller, apps: Iterable[str]) -> str:
    """Why ``caller``'s token may not act on ``apps`` (naming those outside its scope and
    the scope), or "" when its scope covers them all."""
    outside = outside_scope(store, caller.scope, apps)
    return out_of_scope(caller.token, caller.user, caller.scope, outside) if outside else ""


def _cli_refused(store: Store, acting_as: str, what: str, role: str, reason: str,
                 apps: Iterable[str] = ()) -> CatalogueError:
    """A ``cli.refused`` audit event (never with the token) and the error to raise."""
    named = list(apps)
    detail: dict[str, Any] = {"apps": named} if len(named) > 1 else {}
    with store.session() as session:
        audit(session, "cli.refused", actor=acting_as, app=named[0] if len(named) == 1 else "",
              refused=what, role=role, reason=reason, door="cli", **detail)
        session.commit()
    return CatalogueError(reason)


def refuse_out_of_scope(store: Store, token: str, acting_as: str, what: str,
                        apps: Iterable[str]) -> None:
    """Refuse early (CatalogueError, a ``cli.refused`` audit event) when ``token`` is an
    active token whose scope leaves out one of ``apps``. Anything else about the token (none,
    unknown, another user's) is left to the check that follows (the worker's, for an
    approval), which says more."""
    caller = caller_for_token(store, token) if token else None
    named = list(apps)
    reason = scope_refusal(store, caller, named) if caller is not None else ""
    if reason:
        raise _cli_refused(store, acting_as, what, "", f"{what}: {reason}", named)


def caller_with_role(store: Store, token: str, role: str, what: str, acting_as: str,
                     apps: Iterable[str] = ()) -> Caller:
    """The caller behind ``token`` (the one that authenticated the command) when it is
    active, carries ``role``, acts as ``acting_as`` and its scope covers ``apps``; else
    CatalogueError saying how to get one, recorded as a ``cli.refused`` audit event (never
    with the token)."""
    how = (f"an admin creates one with `slipway token create {acting_as} --role {role}` "
           f"(add --name {acting_as}-{role} when {acting_as} has a token already)")
    named = list(apps)
    caller = caller_for_token(store, token) if token else None
    if not token:
        reason = f"{what} needs an API token with the {role} role: {how}"
    elif caller is None:
        reason = (f"{what} needs an API token with the {role} role; the one given is unknown "
                  f"or revoked: {how}")
    elif role not in caller.roles:
        reason = (f"{what} needs the {role} role; token {caller.token} of {caller.user} has "
                  f"{', '.join(sorted(caller.roles)) or 'none'}: {how}")
    elif not same_person(caller.user, acting_as):
        reason = (f"{what}: the token given acts as {caller.user}, but you act as "
                  f"{acting_as}: use your own token")
    elif outside := scope_refusal(store, caller, named):
        reason = f"{what}: {outside}"
    else:
        return caller
    raise _cli_refused(store, acting_as, what, role, reason, named)


def user_for_token(store: Store, token: str) -> str | None:
    """The user an active token acts as, or None."""
    caller = caller_for_token(store, token)
    return caller.user if caller else None
