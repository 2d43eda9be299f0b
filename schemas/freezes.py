"""Deploy windows and freezes: when an environment may receive a release.

A rule applies to a scope: an environment type (``prod``), a cluster (``@hz``), one
environment (``prod@hz``) or everything (``*``). A **freeze** forbids releases while it is
active; a **window** allows them only while it is active (an environment with windows is
closed outside all of them). A rule is one interval (``starts_at`` → ``ends_at``, open-ended
for an incident freeze lifted by hand) or recurs by an RFC 5545 RRULE from its first
occurrence, in its time zone, for ``duration_seconds`` each time.

Pure functions only: the CLI refuses ``--no-wait`` releases with :func:`gate`, an activity
asks it for a running release, and the workflow waits for the opening time it returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from pydantic import BaseModel, field_validator, model_validator

# How far ahead the opening time of a closed environment is looked for.
HORIZON = timedelta(days=400)
# Occurrences are counted from a rule's first one: an older start would make every check slow.
EARLIEST_YEAR = 2000
# A walk through overlapping rules ends after this many hops (each hop passes one interval).
MAX_HOPS = 500


class RuleKind(StrEnum):
    FREEZE = "freeze"
    WINDOW = "window"


class FreezeRule(BaseModel):
    """One freeze or deploy window, as the catalogue keeps it."""

    id: int | None = None
    kind: RuleKind = RuleKind.FREEZE
    scope: str = "prod"
    reason: str = ""
    starts_at: datetime  # the first (or only) occurrence, aware
    ends_at: datetime | None = None  # one interval; None with no rrule: until lifted
    rrule: str = ""  # e.g. "FREQ=WEEKLY;BYDAY=FR" (RFC 5545, without DTSTART)
    duration_seconds: int = 0  # of each occurrence of a recurring rule
    timezone: str = "UTC"
    created_by: str = ""
    incident: bool = False

    @field_validator("scope")
    @classmethod
    def _scope(cls, value: str) -> str:
        value = value.strip()
        if not value or value.count("@") > 1 or any(c.isspace() for c in value):
            raise ValueError(f"scope {value!r}: give an environment type (prod), a cluster "
                             "(@hz), an environment (prod@hz) or * for all")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as "
                             "Asia/Shanghai or UTC)") from None
        return value

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("times must carry a time zone")
        return value

    @model_validator(mode="after")
    def _shape(self) -> FreezeRule:
        if self.starts_at.year < EARLIEST_YEAR:
            raise ValueError(f"a rule starts in {EARLIEST_YEAR} or later")
        if self.rrule:
            if any(f"FREQ={fine}" in self.rrule.upper() for fine in ("SECONDLY", "MINUTELY")):
                raise ValueError("recur at most hourly (FREQ=HOURLY, DAILY, WEEKLY, …)")
            if self.ends_at is not None:
                raise ValueError("a recurring rule has a duration, not an end")
            if self.duration_seconds <= 0:
                raise ValueError("a recurring rule needs a duration (e.g. --duration 2d)")
            try:
                rrulestr(self.rrule, dtstart=self.local_start.replace(tzinfo=None))
            except Exception as error:  # dateutil's parser raises several kinds
                raise ValueError(f"bad RRULE {self.rrule!r}: {error}") from None
        elif self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("the rule ends before it starts")
        elif self.ends_at is None and self.kind == RuleKind.WINDOW:
            raise ValueError("a deploy window needs an end or a recurrence")
        return self

    @property
    def local_start(self) -> datetime:
        return self.starts_at.astimezone(ZoneInfo(self.timezone))

    def applies_to(self, env_type: str, cluster: str) -> bool:
        if self.scope == "*":
            return True
        kind, _, where = self.scope.partition("@")
        return (not kind or kind == env_type) and (not where or where == cluster)

    def intervals(self, since: datetime, until: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The rule's intervals that overlap [since, until), in UTC; an open end is
        ``datetime.max``."""
        if not self.rrule:
            end = self.ends_at or datetime.max.replace(tzinfo=UTC)
            if self.starts_at < until and end > since:
                yield self.starts_at.astimezone(UTC), end
            return
        # Occurrences are computed in local time so "every Friday 18:00" stays 18:00 across
        # daylight-saving changes.
        zone = ZoneInfo(self.timezone)
        length = timedelta(seconds=self.duration_seconds)
        rule = rrulestr(self.rrule, dtstart=self.local_start.replace(tzinfo=None))
        first = (since - length).astimezone(zone).replace(tzinfo=None)
        for local in rule.xafter(first, inc=True):
            start = local.replace(tzinfo=zone).astimezone(UTC)
            if start >= until:
                return
            if start + length > since:
                yield start, start + length

    def describe(self) -> str:
        when = (f"{self.rrule} from {self.local_start:%Y-%m-%d %H:%M} {self.timezone}, "
                f"{_span(self.duration_seconds)} each" if self.rrule else
                f"{self.local_start:%Y-%m-%d %H:%M} → "
                + (f"{self.ends_at.astimezone(ZoneInfo(self.timezone)):%Y-%m-%d %H:%M}"
                   if self.ends_at else "until lifted") + f" {self.timezone}")
        return f"{self.kind} {self.scope}: {when}"


class FreezeVerdict(BaseModel):
    """Whether an environment may be released into now, and if not, why and until when."""

    open: bool
    reason: str = ""
    opens_at: datetime | None = None  # None when closed: until a freeze is lifted
    rule_ids: list[int] = []


class FreezeCheckInput(BaseModel):
    env: str  # type@cluster


class FreezeNotice(BaseModel):
    """Signal ``freeze`` to running releases: an incident freeze was declared."""

    reason: str
    by: str = ""


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def _active(rules: list[FreezeRule], at: datetime) -> list[tuple[FreezeRule, datetime]]:
    """Rules active at ``at``, each with the end of its current interval."""
    found = []
    for rule in rules:
        for start, end in rule.intervals(at, at + timedelta(microseconds=1)):
            if start <= at < end:
                found.append((rule, end))
                break
    return found


def _next_window_start(windows: list[FreezeRule], after: datetime) -> datetime | None:
    starts = [start for rule in windows
              for start, _end in _first(rule.intervals(after, after + HORIZON))]
    return min(starts, default=None)


def _first(intervals: Iterator[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    interval = next(intervals, None)
    return [] if interval is None else [interval]


def gate(rules: list[FreezeRule], env_type: str, cluster: str, now: datetime) -> FreezeVerdict:
    """The verdict for ``env_type@cluster`` at ``now``: open, or closed with the reason of the
    first rule that closes it and the earliest time it opens (None: a freeze without end)."""
    mine = [rule for rule in rules if rule.applies_to(env_type, cluster)]
    freezes = [rule for rule in mine if rule.kind == RuleKind.FREEZE]
    windows = [rule for rule in mine if rule.kind == RuleKind.WINDOW]
    at, reason = now, ""
    ids: list[int] = []
    for _hop in range(MAX_HOPS):
        active = _active(freezes, at)
        if active:
            reason = reason or "; ".join(_why(rule) for rule, _end in active)
            ids = ids or [rule.id or 0 for rule, _end in active]
            at = max(end for _rule, end in active)
            if at.year == datetime.max.year:
                return FreezeVerdict(open=False, reason=reason, rule_ids=ids)
            continue
        if windows and not _active(windows, at):
            reason = reason or ("outside the deploy windows: "
                                + "; ".join(rule.describe() for rule in windows))
            ids = ids or [rule.id or 0 for rule in windows]
            following = _next_window_start(windows, at)
            if following is None or following - now > HORIZON:
                return FreezeVerdict(open=False, reason=reason, rule_ids=ids)
            at = following
            continue
        if at == now:
            return FreezeVerdict(open=True)
        return FreezeVerdict(open=False, reason=reason, opens_at=at, rule_ids=ids)
    return FreezeVerdict(open=False, reason=reason, rule_ids=ids)


def _why(rule: FreezeRule) -> str:
    label = "incident freeze" if rule.incident else f"freeze #{rule.id}"
    by = f" by {rule.created_by}" if rule.created_by else ""
    return f"{label} of {rule.scope}{by}: {rule.reason or 'no reason given'}"
