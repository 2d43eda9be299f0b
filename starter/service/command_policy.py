"""Who may run which command through the server: one role per command, and the applications
the command acts on, which the caller's token scope must cover.

Every command the ``slipway`` tree has is listed here (a test walks the tree): a command
missing from :data:`COMMAND_ROLES` is refused, so a new command cannot slip through
unchecked. Commands that manage the stack's own processes (``up``, ``down``, ``dev``,
``demo``, ``server``) run only on the stack's machine, never through the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import col, select

from catalogue.lanes import lane_owner
from catalogue.store import CatalogueError, Store, audit
from catalogue.tables import Application, Change, LaneRecord
from schemas.identities import same_person
from schemas.scopes import TokenScope
from starter.service.identity import Session
from starter.service.tokens import Caller, scope_refusal

LOCAL = "local"

COMMAND_ROLES: dict[str, str] = {
    # Reading.
    "status": "read", "app list": "read", "app show": "read", "env list": "read",
    "env show": "read", "change list": "read", "change show": "read",
    "baseline list": "read", "baseline diff": "read", "release history": "read",
    "release show": "read", "analysis show": "read", "freeze list": "read",
    "train status": "read", "train list": "read", "lane list": "read", "lane show": "read",
    "rejected list": "read", "build list": "read", "build show": "read", "host list": "read",
    "worker versions": "read", "insights": "read",
    # Releasing and steering one's releases and lanes.
    "release start": "release", "rollback": "release", "promote": "release",
    "promote-full": "release", "pause": "release", "resume": "release", "abort": "release",
    "change create": "release", "change submit": "release", "change close": "release",
    "analysis run": "release", "train create": "release", "train rollback": "release",
    "lane create": "release", "lane renew": "release", "lane update": "release",
    "lane deploy": "release", "lane delete": "release",
    # Deciding: four eyes, freezes, what comes back after a rollback.
    "approve": "approve", "reject": "approve", "train approve": "approve",
    "train reject": "approve", "freeze add": "approve", "freeze now": "approve",
    "env resume-auto": "approve", "rejected clear": "approve",
    "freeze remove": "freeze-admin",
    # Shaping the catalogue and who may act.
    "app register": "admin", "app ready": "admin", "app set-team": "admin",
    "app retire": "admin", "env add": "admin", "env remove": "admin",
    "analysis set": "admin", "analysis clear": "admin", "schedules apply": "admin",
    "token create": "admin", "token revoke": "admin", "build delete": "admin",
    "host cordon": "admin", "host uncordon": "admin", "host drain": "admin",
    # Which build of the workers new runs go to: an upgrade of Slipway itself.
    "worker promote": "admin", "worker rollback": "admin",
    # The stack's own processes.
    "up": LOCAL, "down": LOCAL, "dev": LOCAL, "demo": LOCAL, "server": LOCAL, "agent": LOCAL,
}


class CommandRefused(CatalogueError):
    """The caller may not run this command: the message says why and what to ask for."""


def session_caller(session: Session) -> Caller:
    return Caller(session.user, session.token_name, "", session.roles,
                  TokenScope(session.apps, session.teams))


def _words(text: Any) -> list[str]:
    if isinstance(text, (list, tuple)):
        return [str(item) for item in text if item]
    return [item.strip() for item in str(text or "").split(",") if item.strip()]


def _lane_apps(store: Store, name: str) -> list[str]:
    with store.session() as session:
        row = session.exec(select(LaneRecord).where(LaneRecord.name == name)
                           .order_by(col(LaneRecord.id).desc())).first()
    return list(row.apps) if row else []


def _change_app(store: Store, change_id: Any) -> list[str]:
    with store.session() as session:
        change = session.get(Change, int(change_id)) if change_id is not None else None
        app = session.get(Application, change.app_id) if change is not None else None
    return [app.name] if app is not None else []


def apps_acted_on(store: Store, path: str, params: Mapping[str, Any]) -> list[str]:
    """The applications command ``path`` with ``params`` reads or changes (those a scoped
    token must cover); empty when it names none (lists filter by scope on their own)."""
    group = path.split(" ")[0]
    if "app" in params and params["app"]:
        return _words(params["app"])
    if group == "app" and params.get("name"):
        return [str(params["name"])]
    if group == "change" and "change_id" in params:
        return _change_app(store, params["change_id"])
    if group == "lane":
        named = _words(params.get("apps")) + _words(params.get("add"))
        return named + (_lane_apps(store, str(params["name"])) if params.get("name") else [])
    return []


def authorize(store: Store, session: Session, path: str, params: Mapping[str, Any]) -> None:
    """Raise CommandRefused (recorded as an ``api.refused`` audit event) unless the session's
    token carries the role of ``path`` and its scope covers the applications it acts on."""
    role = COMMAND_ROLES.get(path)
    caller = session_caller(session)
    if role is None:
        reason = f"`slipway {path}` is not a command the server runs"
    elif role == LOCAL:
        reason = (f"`slipway {path}` manages the stack's own processes: run it on the "
                  "machine of the stack, not through the server")
    elif role not in session.roles:
        reason = (f"`slipway {path}` needs the {role} role; token {session.token_name} of "
                  f"{session.user} has {', '.join(sorted(session.roles)) or 'none'}: ask an "
                  f"admin for `slipway token create {session.user} --role {role}` (add "
                  f"--name {session.user}-{role} when you have a token already)")
    else:
        apps = apps_acted_on(store, path, params)
        reason = scope_refusal(store, caller, apps) if apps else ""
        if not reason and path == "lane delete" and "lane-admin" not in session.roles:
            owner = lane_owner(store, str(params.get("name", "")))
            if owner and not same_person(session.user, owner):
                reason = (f"lane {params.get('name')} belongs to {owner}: only its owner or "
                          "a token with the lane-admin role deletes it")
    if not reason:
        return
    with store.session() as db:
        audit(db, "api.refused", actor=session.user, app=",".join(
            apps_acted_on(store, path, params)) if role not in (None, LOCAL) else "",
              command=path, status=403, reason=reason)
        db.commit()
    raise CommandRefused(reason)
