"""Every duration a person can set, with its bounds: one rule, one message, everywhere.

The CLI and the receiver check a duration against its rule before anything starts, the
pydantic models carry the same bounds (so a workflow started another way is refused at its
client), and the workflows use the same constants. A bound keeps timers representable and
history bounded: a TTL of 99999999 days would overflow ``datetime`` inside the workflow.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE, HOUR, DAY = 60, 3600, 86400


@dataclass(frozen=True)
class DurationRule:
    """The range of one duration setting, in seconds."""

    what: str
    minimum: int
    maximum: int

    def check(self, seconds: int) -> int:
        """``seconds`` when within the range, else ValueError with one actionable line."""
        if not self.minimum <= seconds <= self.maximum:
            raise ValueError(f"{self.what} of {spell(seconds)} is out of range: use "
                             f"{spell(self.minimum)} to {spell(self.maximum)}")
        return seconds


def spell(seconds: int) -> str:
    """The shortest exact spelling: 86400 → 1d, 90 → 90s, 120 → 2m."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


LANE_TTL = DurationRule("lane TTL", MINUTE, 365 * DAY)
LANE_GRACE = DurationRule("lane grace period", MINUTE, 30 * DAY)
# A longer soak is a gate step (`promote`): one stable wait must keep history small.
STABLE = DurationRule("stable time", 0, 24 * HOUR)
STABLE_TOTAL_SECONDS = 7 * DAY
APPROVAL_TIMEOUT = DurationRule("approval timeout", MINUTE, 30 * DAY)
SCHEDULE_INTERVAL = DurationRule("schedule interval", MINUTE, 7 * DAY)
DRAIN_TIMEOUT = DurationRule("drain timeout", 0, HOUR)
PROGRESS_DEADLINE = DurationRule("progress deadline", 1, DAY)
ANALYSIS_WINDOW = DurationRule("analysis window", 1, 10 * MINUTE)
HISTORY_WINDOW = DurationRule("history window", MINUTE, 366 * DAY)
# One freeze or deploy-window occurrence: a minute to a quarter.
FREEZE_SPAN = DurationRule("freeze duration", MINUTE, 92 * DAY)
