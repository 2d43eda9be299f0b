"""Release insights, the use-case behind ``slipway insights`` and ``GET /api/insights``: read
the releases of a window from the catalogue, add commit times from git, keep those the caller
may see and asked for, and measure them (schemas.dora)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlmodel import select

from catalogue.insights import release_facts
from catalogue.store import Store
from catalogue.tables import Application
from integrations.commits import commit_time
from schemas.dora import report
from schemas.insights import InsightsReport, ReleaseFact
from schemas.scopes import TokenScope

DAY = 24 * 3600
CommitTime = Callable[[str, str], datetime | None]


class InsightsQuery(BaseModel):
    """Which releases to measure: a window back from now, and optional filters."""

    since_seconds: int = Field(default=30 * DAY, gt=0)
    # A succeeded release followed by a rollback or a fix this soon counts as failed.
    failure_window_seconds: int = Field(default=DAY, gt=0)
    app: str = ""
    team: str = ""
    env_type: str = ""

    def filters(self) -> dict[str, str]:
        return {key: value for key, value in (("app", self.app), ("team", self.team),
                                              ("env_type", self.env_type)) if value}

    def keeps(self, fact: ReleaseFact) -> bool:
        return ((not self.app or fact.app == self.app)
                and (not self.team or fact.team == self.team)
                and (not self.env_type or fact.env_type == self.env_type))


def _with_commit_times(store: Store, facts: list[ReleaseFact],
                       lookup: CommitTime) -> list[ReleaseFact]:
    """Each fact with the time of its change's commit, when the application's source is a
    repository git can read here (each ref is looked up once)."""
    with store.session() as session:
        sources = {app.name: app.source for app in session.exec(select(Application)).all()}
    known: dict[tuple[str, str], datetime | None] = {}
    out = []
    for fact in facts:
        key = (sources.get(fact.app, ""), fact.ref)
        if fact.ref and key not in known:
            known[key] = lookup(*key)
        out.append(fact.model_copy(update={"commit_at": known.get(key)}) if fact.ref
                   else fact)
    return out


def insights(store: Store, query: InsightsQuery, scope: TokenScope | None = None,
             now: datetime | None = None,
             lookup: CommitTime = commit_time) -> InsightsReport:
    """The insights report of the releases ``scope`` covers (None: every one) that ``query``
    selects, over the ``since_seconds`` before ``now``."""
    until = now or datetime.now(UTC)
    since = until - timedelta(seconds=query.since_seconds)
    facts = [fact for fact in release_facts(store, since)
             if query.keeps(fact) and (scope is None or scope.covers(fact.app, fact.team))]
    facts = _with_commit_times(store, facts, lookup)
    return report(facts, since, until, timedelta(seconds=query.failure_window_seconds),
                  query.filters())
