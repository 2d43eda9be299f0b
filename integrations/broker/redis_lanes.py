"""Slipway's side of message lanes on Redis streams: open a lane's consumer groups and record
its message policy, close them again, and find what dead lanes left behind.

A lane gets, on every topic it dyes, its own consumer group ``<topic>-<lane>`` (created at
``$``: it reads only what is produced after the lane opened) and an entry in the topic's
registry saying who consumes the lane's messages (see ``integrations.broker.layout`` for the
whole key layout and ``lanes.messages`` for the consumers that obey it). Each topic is opened
and closed by one Lua script, so the lane's boundary in the stream is exact.

The broker's password is a secret given separately from the URL: it is never part of a
returned detail, a repr, a log line or an error message.
No Temporal imports: activities wrap this.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from pydantic import BaseModel, ConfigDict, ValidationError

from integrations.broker.layout import (
    MessagePolicy,
    baseline_groups_key,
    lane_group,
    registry_key,
    windows_key,
)
from integrations.broker.scripts import CLOSE_LANE, OPEN_LANE
from integrations.errors import PermanentRuntimeError

__all__ = ["BrokerAccessError", "BrokerRequestError", "BrokerUnavailableError", "LaneDetail",
           "MessagePolicy", "RedisLaneBroker", "public_url"]

log = logging.getLogger(__name__)

# Lane names as schemas.lanes.normalise_lane_name makes them (a DNS-1123 label).
LANE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Closed windows kept per lane and topic (older ones are dropped once trimmed from the
# stream anyway); enough for a lane re-created many times while a consumer lags far behind.
WINDOWS_KEPT = 16
CONNECT_TIMEOUT_SECONDS = 5.0
COMMAND_TIMEOUT_SECONDS = 10.0


class BrokerAccessError(PermanentRuntimeError):
    """The broker refused Slipway's credentials or its ACL forbids a command: a person must
    fix the password or the ACL user; retrying cannot help."""


class BrokerRequestError(PermanentRuntimeError):
    """The request itself cannot succeed (bad lane or topic name, a detail from another
    broker, a key of the wrong type on the broker)."""


class BrokerUnavailableError(ConnectionError):
    """The broker could not be reached or did not answer in time: worth retrying."""


class LaneDetail(BaseModel):
    """What ``open_lane`` returns (as a JSON-able dict): enough to undo it from the dict alone."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    broker: str  # the broker's URL, without credentials
    lane: str
    policy: MessagePolicy
    topics: list[str]
    groups: dict[str, str]  # topic → the lane's consumer group on it
    registry: dict[str, str]  # topic → the registry hash holding the lane's policy


def public_url(url: str) -> str:
    """``url`` with no password and no query (which may carry one): safe to show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{parts.username}@{host}" if parts.username else host
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class RedisLaneBroker:
    """Opens and closes message lanes on one Redis server (redis-py client)."""

    def __init__(self, url: str, password: str = "") -> None:
        self.url = public_url(url)
        embedded = urlsplit(url).password or ""
        # Every secret that could surface in a message redis-py builds is scrubbed from ours.
        self._secrets = [secret for secret in (password, embedded) if secret]
        try:
            self._client: redis.Redis = redis.Redis.from_url(
                url, password=password or None, decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
                socket_timeout=COMMAND_TIMEOUT_SECONDS)
        except ValueError as exc:
            raise BrokerRequestError(f"broker URL {self.url!r} is not a Redis URL "
                                     f"({self._scrub(str(exc))}): use "
                                     "redis://host:port/db, rediss://… or unix://…") from None
        self._open = self._client.register_script(OPEN_LANE)
        self._close = self._client.register_script(CLOSE_LANE)

    def __repr__(self) -> str:
        return f"RedisLaneBroker({self.url!r})"

    def close(self) -> None:
        """Release the client's connections."""
        self._client.close()

    def __enter__(self) -> RedisLaneBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lanes --------------------------------------------------------------------------

    def open_lane(self, lane: str, topics: list[str], policy: MessagePolicy) -> dict[str, Any]:
        """Create the lane's group ``<topic>-<lane>`` on every topic's stream (at ``$``, with
        MKSTREAM) and record ``policy`` in the topic's registry. Idempotent: a group or an
        entry already there is fine; opening again with another policy switches it."""
        lane, topics, policy = self._lane(lane), self._topics(topics), self._policy(policy)
        detail = LaneDetail(broker=self.url, lane=lane, policy=policy, topics=topics,
                            groups={topic: lane_group(topic, lane) for topic in topics},
                            registry={topic: registry_key(topic) for topic in topics})
        with self._calls(f"opening lane {lane}"):
            for topic in topics:
                self._open(keys=self._keys(topic),
                           args=[lane, lane_group(topic, lane), WINDOWS_KEPT, policy.value])
        log.info("lane %s opened on %s: topics %s, %s", lane, self.url, topics, policy.value)
        return detail.model_dump(mode="json")

    def close_lane(self, detail: dict[str, Any]) -> None:
        """Undo ``open_lane`` from its detail: destroy the lane's groups and remove its
        registry entries. Idempotent: what is already gone is fine."""
        try:
            opened = LaneDetail.model_validate(detail)
        except ValidationError as exc:
            raise BrokerRequestError(f"not a message-lane detail (from open_lane): "
                                     f"{exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None
        if opened.broker != self.url:
            # Closing on another server would leave the lane's groups where they are.
            raise BrokerRequestError(f"lane {opened.lane} was opened on {opened.broker}, this "
                                     f"broker is {self.url}: close it with a broker for "
                                     f"{opened.broker} (or sweep it there with forget_lane)")
        lane = self._lane(opened.lane)
        self._forget(lane, [(topic, opened.groups.get(topic) or lane_group(topic, lane))
                            for topic in self._topics(opened.topics)])

    def forget_lane(self, lane: str, topics: list[str]) -> None:
        """Sweep a lane that left no detail behind (the janitor's): its ``<topic>-<lane>``
        groups and registry entries on ``topics``. A baseline's group is never destroyed."""
        lane = self._lane(lane)
        self._forget(lane, [(topic, lane_group(topic, lane)) for topic in self._topics(topics)])

    def lanes(self, topics: list[str]) -> set[str]:
        """Lanes with a registry entry or a ``<topic>-<lane>`` group on any of ``topics``:
        what the janitor compares with the lanes still alive. Groups the baseline consumers
        registered as theirs are not lanes, whatever their name."""
        found: set[str] = set()
        with self._calls("listing lanes"):
            for topic in self._topics(topics):
                found.update(cast(list[str], self._client.hkeys(registry_key(topic))))
                if not self._client.exists(topic):
                    continue
                baseline = cast(set[str], self._client.smembers(baseline_groups_key(topic)))
                groups = cast(list[dict[str, Any]], self._client.xinfo_groups(topic))
                prefix = f"{topic}-"
                for group in groups:
                    name = str(group["name"])
                    lane = name.removeprefix(prefix)
                    if name.startswith(prefix) and name not in baseline \
                            and LANE_NAME.fullmatch(lane):
                        found.add(lane)
        return found

    # -- helpers ------------------------------------------------------------------------

    def _forget(self, lane: str, groups: list[tuple[str, str]]) -> None:
        with self._calls(f"closing lane {lane}"):
            for topic, group in groups:
                destroyed = self._close(keys=self._keys(topic),
                                        args=[lane, group, WINDOWS_KEPT])
                if not destroyed:
                    log.warning("group %s on %s is a baseline group: left in place", group,
                                topic)
        log.info("lane %s closed on %s: topics %s", lane, self.url, [t for t, _ in groups])

    @staticmethod
    def _keys(topic: str) -> list[str]:
        return [topic, registry_key(topic), windows_key(topic), baseline_groups_key(topic)]

    @staticmethod
    def _lane(lane: str) -> str:
        if not LANE_NAME.fullmatch(lane or ""):
            raise BrokerRequestError(f"lane name {lane!r} is not a normalised lane name "
                                     "(lowercase letters, digits and inner '-', at most 63)")
        return lane

    @staticmethod
    def _policy(policy: str) -> MessagePolicy:
        try:
            return MessagePolicy(policy)
        except ValueError:
            raise BrokerRequestError(f"message policy {policy!r} is not one of "
                                     f"{[p.value for p in MessagePolicy]}") from None

    @staticmethod
    def _topics(topics: list[str]) -> list[str]:
        unique = list(dict.fromkeys(topics))
        bad = [topic for topic in unique if not topic or topic != topic.strip()
               or any(c in topic for c in "{}")]
        if bad:
            # Braces would change the keys' cluster hash tag (layout.py).
            raise BrokerRequestError(f"topic names {bad!r} are not usable: non-empty, no "
                                     "surrounding spaces, no braces")
        return unique

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def _calls(self, doing: str) -> Iterator[None]:
        """Turn redis-py's errors into ours, each naming the broker (never its password) and
        what to check. ``from None``: the original text is in our message, scrubbed."""
        try:
            yield
        except redis.exceptions.AuthenticationError as exc:  # before ConnectionError: a subclass
            raise BrokerAccessError(
                f"Redis broker {self.url} refused Slipway's credentials while {doing} "
                f"({self._scrub(str(exc))}): check the broker password Slipway is given "
                "(a secret, not part of the URL) and the ACL user in the URL") from None
        except redis.exceptions.NoPermissionError as exc:
            raise BrokerAccessError(
                f"Redis broker {self.url} denied a command while {doing} "
                f"({self._scrub(str(exc))}): the ACL user needs XGROUP, XINFO, XRANGE, "
                "HSET/HGET/HDEL/HKEYS, SMEMBERS/SISMEMBER, EXISTS, EVALSHA/EVAL on the topic "
                "streams and the slipway:* keys") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise BrokerUnavailableError(
                f"Redis broker {self.url} cannot be reached while {doing} "
                f"({self._scrub(str(exc))}): check the URL, that redis-server runs there and "
                "that this host can reach its port") from None
        except redis.exceptions.ResponseError as exc:
            text = self._scrub(str(exc))
            if "NOAUTH" in text or "WRONGPASS" in text:
                raise BrokerAccessError(
                    f"Redis broker {self.url} refused Slipway's credentials while {doing} "
                    f"({text}): check the broker password Slipway is given") from None
            if "SLIPWAY_BASELINE_GROUP" in text:
                raise BrokerRequestError(
                    f"Redis broker {self.url}: {text.split()[-1]} is a baseline consumer "
                    f"group, a lane cannot take it while {doing}: rename the lane or the "
                    "baseline's group") from None
            raise BrokerRequestError(f"Redis broker {self.url} refused a request while "
                                     f"{doing} ({text})") from None
