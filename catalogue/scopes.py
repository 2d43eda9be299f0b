"""Token scopes against the catalogue: the team of each application, and the applications a
token's scope (schemas.scopes) leaves out."""

from __future__ import annotations

from collections.abc import Iterable

from sqlmodel import col, select

from catalogue.store import Store
from catalogue.tables import Application
from schemas.scopes import TokenScope


def teams_of(store: Store, apps: Iterable[str]) -> dict[str, str]:
    """The team of each of ``apps``: "" for an application without one, or one the catalogue
    does not know (which a team therefore never covers)."""
    names = list(dict.fromkeys(apps))
    with store.session() as session:
        rows = session.exec(select(Application.name, Application.team).where(
            col(Application.name).in_(names))).all() if names else []
    known = {name: team for name, team in rows}
    return {name: known.get(name, "") for name in names}


def outside_scope(store: Store, scope: TokenScope, apps: Iterable[str]) -> list[tuple[str, str]]:
    """(application, team) of each of ``apps`` that ``scope`` does not cover, in order; empty
    when it covers them all (an unlimited scope needs no look-up)."""
    if scope.everything:
        return []
    return [(app, team) for app, team in teams_of(store, apps).items()
            if not scope.covers(app, team)]
