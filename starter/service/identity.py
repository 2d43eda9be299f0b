"""Who is acting: user names follow one rule wherever they enter (tokens, --as, owners and
approvers), and the actor recorded in audit events.

A command run by the server (``POST /api/commands``) acts as the user of the bearer token that
authenticated it: the server begins a :class:`Session` in the command's process before the
command runs, and nothing the caller typed can change it. Outside a session (the operator's
own commands on the stack's machine: ``up``, ``demo``; tests) the actor is ``$SLIPWAY_USER``
or the operating-system user.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass, field

from catalogue.store import CatalogueError, Store, audit

# Letters, digits and . _ @ - ; no spaces, newlines or separators a list or a log could split on.
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def check_user(name: str, what: str = "user name") -> str:
    """``name`` when it follows the rule, else CatalogueError with one actionable line."""
    if not _USER_NAME.fullmatch(name):
        raise CatalogueError(f"invalid {what} {name!r}: use 1 to 64 letters, digits, '.', '_', "
                             "'@' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class Session:
    """The authenticated caller of a command the server runs: its token's user, name, roles
    and scope (apps, teams), and the token itself (it signs approval proofs in this process
    and is never written anywhere)."""

    user: str
    token_name: str
    token: str = field(repr=False)
    roles: frozenset[str] = frozenset()
    apps: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()
    # Files the caller uploaded with the command (policy files): the only paths it may name.
    uploads: str = ""


_session: Session | None = None


def begin_session(session: Session) -> None:
    """Act as ``session``'s caller for the rest of this process (a server-run command)."""
    global _session
    _session = session


def current_session() -> Session | None:
    """The caller of the command this process runs for the server, or None."""
    return _session


def session_token() -> str:
    """The token of this process's session, else ``$SLIPWAY_TOKEN`` (operator, tests)."""
    if _session is not None:
        return _session.token
    return os.environ.get("SLIPWAY_TOKEN", "").strip()


def acting_user(as_user: str | None) -> str:
    """Who a command acts as: the caller, or with ``--as`` another user, which only a caller
    whose token carries the admin role may ask for (the command audits it)."""
    if not as_user:
        return current_user()
    check_user(as_user, "--as user")
    if _session is not None and "admin" not in _session.roles:
        raise CatalogueError(f"--as {as_user}: acting as another user needs the admin role; "
                             f"token {_session.token_name} of {_session.user} has "
                             f"{', '.join(sorted(_session.roles)) or 'none'}")
    return as_user


def current_user() -> str:
    """The session's user in a server-run command; else ``$SLIPWAY_USER`` when set (the
    operator's processes, tests), else the operating-system user name."""
    if _session is not None:
        return _session.user
    explicit = os.environ.get("SLIPWAY_USER", "")
    if explicit:
        return check_user(explicit, "SLIPWAY_USER")
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # Containers often run as a uid with no passwd entry; still record something traceable.
        return f"uid-{os.getuid()}"


def impersonated(store: Store, as_user: str, what: str) -> None:
    """Audit an admin acting ``--as`` another user: the event names both."""
    with store.session() as session:
        audit(session, "cli.impersonate", actor=current_user(), as_user=as_user, command=what)
        session.commit()
