"""On which applications an API token may act: its scope.

A token's roles say *what* it may do; its scope says *on which applications*. A scope names
applications (``token create --app``) and/or teams (``--team``: every application registered
with that team, ``app register --team``, now or later). A token with neither acts on every
application, as every token made before scopes existed does.

Pure: the catalogue stores scopes and knows each application's team; the receiver, the CLI
and the approval verifier ask :meth:`TokenScope.covers` and word refusals with
:func:`out_of_scope`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


def _names(text: str) -> frozenset[str]:
    return frozenset(name for name in text.split(",") if name)


def _listed(kind: str, names: Iterable[str]) -> str:
    ordered = sorted(names)
    return f"{kind}{'s' if len(ordered) > 1 else ''} {', '.join(ordered)}"


@dataclass(frozen=True)
class TokenScope:
    """The applications and teams a token is limited to; both empty: every application."""

    apps: frozenset[str] = frozenset()
    teams: frozenset[str] = frozenset()

    @classmethod
    def stored(cls, apps: str, teams: str) -> TokenScope:
        """From the catalogue's comma-separated columns."""
        return cls(_names(apps), _names(teams))

    @property
    def everything(self) -> bool:
        """No limit: the token acts on every application."""
        return not self.apps and not self.teams

    def covers(self, app: str, team: str = "") -> bool:
        """Whether the token may act on ``app``, whose team is ``team`` (empty: none)."""
        return self.everything or app in self.apps or bool(team and team in self.teams)

    def describe(self) -> str:
        """``every application``, ``team a``, ``applications x, y``, ``team a and
        application x``."""
        if self.everything:
            return "every application"
        parts = ([_listed("team", self.teams)] if self.teams else []) + (
            [_listed("application", self.apps)] if self.apps else [])
        return " and ".join(parts)


def out_of_scope(token: str, user: str, scope: TokenScope,
                 outside: list[tuple[str, str]]) -> str:
    """Why token ``token`` of ``user`` may not act on ``outside`` ((application, team)
    pairs its scope does not cover), and how to get one that may. Never the token itself."""
    named = ", ".join(f"{app} ({f'team {team}' if team else 'no team'})" for app, team in outside)
    first_app, first_team = outside[0]
    how = f"--team {first_team}" if first_team else f"--app {first_app}"
    return (f"token {token} of {user} is limited to {scope.describe()}: "
            f"{'application' if len(outside) == 1 else 'applications'} {named} "
            f"{'is' if len(outside) == 1 else 'are'} outside its scope; use a token whose scope "
            f"covers {'it' if len(outside) == 1 else 'them'} (an admin creates one with "
            f"`slipway token create {user} --name {user}-{first_team or first_app} {how}`)")
