"""Message lanes for the services themselves: the library a Python service imports to produce
and consume on Redis streams so that swimlanes (泳道) split the messages exactly.

The contract (what Slipway's ``integrations.broker.redis_lanes`` sets up, what every service
on a dyed topic must do; the key layout is in ``integrations.broker.layout``):

* **Producing**: a message produced in a lane carries the field ``slipway-lane`` = the lane
  (``produce(client, topic, fields, lane=current_lane())``); the baseline produces without
  it. A service that handles a lane message and produces in turn passes the lane on.
* **Which group**: a service reads ``topic`` with its own consumer group, the baseline's
  (e.g. ``orders-service``), unless ``SLIPWAY_CONSUMER_GROUP_<TOPIC>`` names another: Slipway
  sets it to ``<topic>-<lane>`` in a lane's containers, and ``SLIPWAY_LANE`` to the lane
  (``group_for``, ``current_lane``, ``LaneConsumer.from_env``).
* **Who handles what**: every group sees every message. A lane with policy ``lane-consume``
  owns the lane messages produced while it was open; all other messages belong to the
  baseline (unkeyed ones, those of lanes with ``qa-consume``, the default, and those of
  lanes not open when they were produced). The baseline handles what belongs to it and
  acknowledges-and-skips the rest; a lane consumer handles its own lane's owned messages and
  acknowledges-and-skips everything else. So each message is handled by exactly one group.
* **Freshness**: ownership is read from Redis for every batch read (one HMGET), not cached,
  and is decided by the message's id against the id range in which the lane was open
  (recorded atomically when Slipway opens and closes it): a lane opened or closed while a
  consumer lags behind still splits the stream exactly, and a consumer sees a new or
  deleted lane at its next poll.
* **Delivery**: at least once. The handler runs before XACK; a crash (or a handler that
  raises) leaves the message pending in the group, and the next ``poll`` of a consumer with
  the same name handles it again before reading new ones. Handlers must be idempotent.
  Messages pending on a consumer name that never comes back stay pending: claim them with
  XAUTOCLAIM (not done here).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from integrations.broker.layout import (
    LANE_FIELD,
    Window,
    baseline_groups_key,
    owned_by_lane,
    parse_windows,
    windows_key,
)

__all__ = ["LANE_ENV", "LANE_FIELD", "GROUP_ENV_PREFIX", "LaneConsumer", "LaneGroupMissingError",
           "LaneMessage", "current_lane", "group_env_var", "group_for", "produce"]

LANE_ENV = "SLIPWAY_LANE"  # set in a lane's containers: the lane's name
GROUP_ENV_PREFIX = "SLIPWAY_CONSUMER_GROUP_"  # + the topic, upper-cased, [^A-Z0-9] → "_"

FieldValue = str | bytes | int | float


class LaneGroupMissingError(RuntimeError):
    """The lane's consumer group does not exist: the lane is not open on this broker (or was
    closed). Slipway creates it (open_lane); a lane consumer never does."""


def group_env_var(topic: str) -> str:
    """The variable naming the consumer group for ``topic`` (as lanes/resources.py sets it)."""
    return GROUP_ENV_PREFIX + re.sub(r"[^A-Z0-9]", "_", topic.upper())


def group_for(topic: str, default: str) -> str:
    """The group to read ``topic`` with: the lane's when Slipway set one, else ``default``
    (the service's own baseline group)."""
    return os.environ.get(group_env_var(topic)) or default


def current_lane() -> str:
    """The lane this process runs in ("" for the baseline)."""
    return os.environ.get(LANE_ENV, "")


def produce(client: redis.Redis, topic: str, fields: Mapping[str, FieldValue], lane: str = "",
            *, maxlen: int | None = None) -> str:
    """Append a message to ``topic`` (XADD), keyed with ``lane`` when one is given; its id.
    ``maxlen`` trims the stream approximately (XADD MAXLEN ~)."""
    if LANE_FIELD in fields:
        raise ValueError(f"{LANE_FIELD!r} is the lane key: pass lane= instead of the field")
    entry: dict[str, FieldValue] = dict(fields)
    if lane:
        entry[LANE_FIELD] = lane
    if not entry:
        raise ValueError("a stream message needs at least one field")
    # redis-py's stub wants its own invariant mapping types; the values are what it accepts.
    message_id = client.xadd(topic, cast(Any, entry), maxlen=maxlen, approximate=True)
    return _text(message_id)


@dataclass(frozen=True)
class LaneMessage:
    """One message as a handler gets it: its payload without the lane key, and the lane it
    was produced in ("" for the baseline's)."""

    id: str
    topic: str
    lane: str
    fields: dict[str, str] = field(default_factory=dict)


Handler = Callable[[LaneMessage], None]


class LaneConsumer:
    """One consumer of ``topic`` in consumer group ``group``: the baseline's (``lane`` "")
    or a lane's (``lane`` set, ``group`` its ``<topic>-<lane>``).

    A baseline consumer registers its group as a baseline group (so Slipway never sweeps it
    as a lane's) and creates it when missing, at ``start_id`` (``$``: new messages only).
    A lane's group is Slipway's to create: a missing one raises LaneGroupMissingError.
    """

    def __init__(self, client: redis.Redis, topic: str, group: str, consumer_name: str,
                 lane: str = "", *, start_id: str = "$") -> None:
        self.client = client
        self.topic = topic
        self.group = group
        self.consumer_name = consumer_name
        self.lane = lane
        # Read this consumer's own pending messages (left by a crash or a failed handler)
        # before new ones: what makes delivery at-least-once.
        self._pending_first = True
        if not lane:
            client.sadd(baseline_groups_key(topic), group)
            try:
                client.xgroup_create(topic, group, id=start_id, mkstream=True)
            except redis.exceptions.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    @classmethod
    def from_env(cls, client: redis.Redis, topic: str, baseline_group: str,
                 consumer_name: str) -> LaneConsumer:
        """The consumer this process should run: the lane's when Slipway dyed this topic in
        its lane (SLIPWAY_LANE and SLIPWAY_CONSUMER_GROUP_<TOPIC> both set), else one of the
        baseline's. A lane container on a topic its lane does not dye is a plain baseline
        consumer: taking the lane's view in the baseline's group would skip, and so lose,
        the baseline's messages."""
        lane, group = current_lane(), os.environ.get(group_env_var(topic), "")
        if lane and group:
            return cls(client, topic, group, consumer_name, lane)
        return cls(client, topic, baseline_group, consumer_name)

    def poll(self, handler: Handler, count: int = 10, block_ms: int = 1000) -> int:
        """Read up to ``count`` messages (waiting up to ``block_ms`` for new ones; 0: not at
        all, unlike XREADGROUP's BLOCK 0, which waits forever), call
        ``handler`` on those this consumer owns, acknowledge all of them; how many were
        handled. A handler's exception propagates after the skipped ones are acknowledged;
        its message stays pending and is handed over again by the next poll."""
        entries = self._read(count, block_ms)
        if not entries:
            return 0
        windows = self._windows({self._lane_of(fields) for _, fields in entries})
        handled = 0
        skipped: list[str] = []
        try:
            for message_id, fields in entries:
                if fields is None:  # pending, but trimmed from the stream: nothing to handle
                    skipped.append(message_id)
                    continue
                lane = self._lane_of(fields)
                if not self._mine(message_id, lane, windows.get(lane, [])):
                    skipped.append(message_id)
                    continue
                payload = {key: value for key, value in fields.items() if key != LANE_FIELD}
                try:
                    handler(LaneMessage(message_id, self.topic, lane, payload))
                except BaseException:
                    self._pending_first = True
                    raise
                self.client.xack(self.topic, self.group, message_id)
                handled += 1
        finally:
            if skipped:
                self.client.xack(self.topic, self.group, *skipped)
        return handled

    # -- helpers ------------------------------------------------------------------------

    def _mine(self, message_id: str, lane: str, windows: list[Window]) -> bool:
        lanes_own = bool(lane) and owned_by_lane(message_id, windows)
        if not self.lane:
            return not lanes_own
        return lane == self.lane and lanes_own

    def _read(self, count: int, block_ms: int) -> list[tuple[str, dict[str, str] | None]]:
        if self._pending_first:
            entries = self._xreadgroup("0", count, None)
            if entries:
                return entries
            self._pending_first = False
        return self._xreadgroup(">", count, block_ms if block_ms > 0 else None)

    def _xreadgroup(self, start: str, count: int,
                    block_ms: int | None) -> list[tuple[str, dict[str, str] | None]]:
        try:
            reply = self.client.xreadgroup(self.group, self.consumer_name, {self.topic: start},
                                           count=count, block=block_ms)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" in str(exc) and self.lane:
                raise LaneGroupMissingError(
                    f"consumer group {self.group} does not exist on stream {self.topic}: lane "
                    f"{self.lane} is not open on this broker (or was closed)") from exc
            raise
        entries: list[tuple[str, dict[str, str] | None]] = []
        # [[stream, [(id, fields | None), ...]]] (RESP2), or {stream: [...]} from a RESP3
        # client that keeps the server's map: redis-py types the reply loosely.
        streams = cast(list[tuple[Any, list[tuple[Any, Mapping[Any, Any] | None]]]],
                       list(reply.items()) if isinstance(reply, dict) else reply or [])
        for _stream, messages in streams:
            for message_id, fields in messages:
                entries.append((_text(message_id), _decoded(fields)))
        return entries

    def _windows(self, lanes: set[str]) -> dict[str, list[Window]]:
        """The lane-consume windows of ``lanes`` (only this consumer's own for a lane),
        read now: one HMGET for the whole batch."""
        wanted = sorted({self.lane} & lanes if self.lane else lanes - {""})
        if not wanted:
            return {}
        raw = cast(list[Any], self.client.hmget(windows_key(self.topic), wanted))
        return {lane: parse_windows(value) for lane, value in zip(wanted, raw, strict=True)}

    @staticmethod
    def _lane_of(fields: dict[str, str] | None) -> str:
        return (fields or {}).get(LANE_FIELD, "")


def _text(value: str | bytes | Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(fields: Mapping[Any, Any] | None) -> dict[str, str] | None:
    """A message's fields as text, whether the client decodes responses or not (bytes that
    are not UTF-8 survive as surrogate escapes: ``.encode("utf-8", "surrogateescape")``)."""
    if fields is None:
        return None
    return {_raw_text(key): _raw_text(value) for key, value in fields.items()}


def _raw_text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)
