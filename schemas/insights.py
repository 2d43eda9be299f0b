"""The shapes of release insights (DORA figures and release durations): the facts one release
leaves in the catalogue, and the report the measures make of them.

The measures themselves are pure functions in :mod:`schemas.dora`; ``docs/insights.md``
defines each in words. Durations are seconds, times UTC.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

# The states in which a release changed what an environment runs, or tried to: the
# denominator of the change failure rate. Rejected and expired releases never rolled out.
ATTEMPTED_STATES = frozenset({"succeeded", "rolled_back", "failed"})


class ReleaseFact(BaseModel):
    """What one release left in the catalogue, flattened for the measures."""

    release_id: int
    app: str
    team: str = ""
    env: str  # type@cluster
    env_type: str
    state: str  # schemas.enums.ReleaseState
    # A rollback: to an older baseline (rollback_to set) or a fix-forward image.
    rollback: bool = False
    rollback_to: int | None = None
    started_at: datetime
    finished_at: datetime | None = None
    change_id: int | None = None
    change_created_at: datetime | None = None
    ref: str = ""
    note: str = ""
    # When the commit the change carries was made (from git / the code host), if known.
    commit_at: datetime | None = None
    # When the release's build was recorded (none: the change named an image).
    built_at: datetime | None = None
    # When the release started waiting for approval, and when that wait ended.
    approval_asked_at: datetime | None = None
    approval_decided_at: datetime | None = None
    error: str = ""


class Spread(BaseModel):
    """Median and 90th percentile of some durations (nearest rank), and how many there were."""

    count: int = 0
    median: float | None = None
    p90: float | None = None


class Failure(BaseModel):
    """One release that counts as a failed change, and why."""

    release_id: int
    app: str
    env: str
    cause: str  # rolled back | failed | rolled back later | fixed forward
    at: datetime
    detail: str = ""


class WeekPoint(BaseModel):
    """One ISO week of the trend: deployments, failed changes, median lead time."""

    week: str  # 2026-W07
    deployments: int = 0
    failures: int = 0
    lead_time_median: float | None = None


class GroupInsights(BaseModel):
    """The four measures and the stage durations of one group of releases."""

    by: str  # all | app | team | env_type
    name: str
    deployments: int = 0
    deployments_per_week: float = 0.0
    lead_time: Spread = Field(default_factory=Spread)
    attempts: int = 0
    failures: int = 0
    change_failure_rate: float | None = None
    restore_time: Spread = Field(default_factory=Spread)
    # Failures the release's own undo restored (no restore time of their own: see the docs).
    self_restored: int = 0
    # Stage durations of finished releases: build, approval wait, rollout, whole release.
    stages: dict[str, Spread] = Field(default_factory=dict)


class InsightsReport(BaseModel):
    """``slipway insights`` / ``GET /api/insights``: every group over one window."""

    since: datetime
    until: datetime
    window_seconds: int
    failure_window_seconds: int
    filters: dict[str, str] = Field(default_factory=dict)
    groups: list[GroupInsights] = Field(default_factory=list)
    trend: list[WeekPoint] = Field(default_factory=list)
    lead_times: list[float] = Field(default_factory=list)  # every one, for the distribution
    failures: list[Failure] = Field(default_factory=list)

    def group(self, by: str, name: str) -> GroupInsights | None:
        return next((g for g in self.groups if g.by == by and g.name == name), None)
