"""The Redis layout of message lanes, shared by Slipway (``integrations.broker.redis_lanes``)
and the services that produce and consume (``lanes.messages``): key names, the lane field of
a message, and the rule that says which messages a lane owns.

Per topic (a Redis stream named after the topic):

* ``<topic>``: the stream every producer of the topic appends to; a message produced in a
  lane carries the field ``slipway-lane`` = the lane's name.
* ``<topic>-<lane>``: the lane's consumer group on that stream (what
  ``SLIPWAY_CONSUMER_GROUP_<TOPIC>`` tells a lane container), created at ``$``.
* ``slipway:lanes:{<topic>}``: hash, lane → policy (``qa-consume`` / ``lane-consume``):
  which lanes are open and how their messages are consumed.
* ``slipway:lane-windows:{<topic>}``: hash, lane → JSON ``[[since, until], ...]``: the
  stream-id ranges ``(since, until]`` during which the lane consumed its own messages
  (``until`` "" while it still does). Which group handles a message is decided from these
  ranges and the message's own id, never from the moment a consumer happens to read it,
  so a lane opened or closed while a consumer lags behind still splits the stream exactly.
* ``slipway:baseline-groups:{<topic>}``: set of the QA baseline's own group names, added by
  baseline consumers; Slipway never takes such a group for a lane's, even if it is named
  ``<topic>-<something>``.

The ``{<topic>}`` hash tag puts the Slipway keys in the stream's cluster slot (a key with no
braces hashes as a whole), so the atomic scripts also run on Redis Cluster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

# Who consumes a lane's messages: one enum for the lane's spec, its ledger and the broker
# (qa-consume, the default: the baseline handles them; lane-consume: the lane's consumers).
from schemas.lanes import MessagePolicy

__all__ = ["LANE_FIELD", "MessagePolicy", "Window", "baseline_groups_key", "lane_group",
           "owned_by_lane", "parse_windows", "registry_key", "stream_id", "windows_key"]

LANE_FIELD = "slipway-lane"  # the message field that carries the lane a message was produced in


def lane_group(topic: str, lane: str) -> str:
    """The lane's consumer group on ``topic``'s stream."""
    return f"{topic}-{lane}"


def registry_key(topic: str) -> str:
    """Hash lane → policy of the lanes open on ``topic``."""
    return f"slipway:lanes:{{{topic}}}"


def windows_key(topic: str) -> str:
    """Hash lane → JSON list of the id ranges in which the lane consumed its own messages."""
    return f"slipway:lane-windows:{{{topic}}}"


def baseline_groups_key(topic: str) -> str:
    """Set of the baseline's consumer groups on ``topic`` (never swept as a lane's)."""
    return f"slipway:baseline-groups:{{{topic}}}"


def stream_id(text: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as a pair that compares in stream order."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Window:
    """Stream ids ``(since, until]`` whose lane messages the lane consumed itself; ``until``
    is "" while the window is open (the lane is open with ``lane-consume``)."""

    since: str
    until: str = ""

    def holds(self, message_id: str) -> bool:
        position = stream_id(message_id)
        if position <= stream_id(self.since):
            return False
        return not self.until or position <= stream_id(self.until)


def parse_windows(raw: str | bytes | None) -> list[Window]:
    """The windows stored for one lane (absent or unreadable: none, i.e. QA consumes)."""
    if not raw:
        return []
    try:
        pairs = json.loads(raw)
        return [Window(str(since), str(until)) for since, until in pairs]
    except (ValueError, TypeError):
        # A value Slipway did not write: treat the lane as QA-consumed rather than lose
        # messages to a lane nobody may be reading.
        return []


def owned_by_lane(message_id: str, windows: list[Window]) -> bool:
    """True when the lane consumes this message itself (its id falls in one of the lane's
    lane-consume windows); False means the QA baseline handles it."""
    return any(window.holds(message_id) for window in windows)
