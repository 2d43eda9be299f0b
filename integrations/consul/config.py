"""Config forks for swimlanes in Consul KV (``py-consul``).

A lane gets its own copy of an application's integration-test configuration: every key under
the source prefix (e.g. ``config/it/shop/``) is copied under the lane's prefix (e.g.
``config/lanes/pay-42/shop/``) with the same suffix, so the lane's instances read the lane copy
and a change there never leaks into QA. Deleting the lane deletes its prefix.

Prefixes are treated as folders: ``config/it/shop`` means ``config/it/shop/``, so a sibling
``config/it/shopping/`` is never copied or deleted by accident.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import consul

log = logging.getLogger(__name__)


def folder(prefix: str) -> str:
    """``prefix`` as a KV folder: no leading slash (Consul keys have none), one trailing."""
    cleaned = prefix.strip("/")
    if not cleaned:
        # An empty prefix is the whole KV store: copying or deleting it is never what a lane
        # means, and a recursive delete of it would wipe every application's configuration.
        raise ValueError("a Consul KV prefix must not be empty")
    return cleaned + "/"


class ConsulConfig:
    """Forks, reads and deletes configuration prefixes in Consul KV."""

    def __init__(self, url: str, token: str = "", timeout: float = 30.0) -> None:
        parts = urlsplit(url if "//" in url else f"//{url}")
        scheme = parts.scheme or "http"
        port = parts.port or (443 if scheme == "https" else 8500)
        self.url = url
        self.client = consul.Consul(host=parts.hostname or "127.0.0.1", port=port,
                                    scheme=scheme, token=token or None)
        # py-consul prefers CONSUL_HTTP_TOKEN from the environment over the token passed in;
        # Slipway's settings are the one source of credentials, so the given token wins.
        self.client.token = token or None
        self.client.http.connections_timeout = timeout

    def fork(self, source_prefix: str, lane_prefix: str) -> int:
        """Copy every key under ``source_prefix`` to ``lane_prefix``; return how many.

        Idempotent: a second run overwrites the lane's keys with the same values. Values and
        flags are copied as they are (bytes, not decoded), so binary configuration survives.
        """
        source, lane = folder(source_prefix), folder(lane_prefix)
        if source.startswith(lane) or lane.startswith(source):
            raise ValueError(f"cannot fork {source!r} into {lane!r}: one contains the other")
        entries: list[dict[str, Any]] = self._entries(source)
        for entry in entries:
            key = str(entry["Key"])
            value = entry.get("Value")
            # Folder markers ("a/b/") have a null value in Consul; a PUT needs a body.
            self.client.kv.put(lane + key[len(source):], value if value is not None else b"",
                               flags=entry.get("Flags") or None)
        log.info("forked %d Consul keys from %s to %s", len(entries), source, lane)
        return len(entries)

    def delete_prefix(self, lane_prefix: str) -> None:
        """Delete every key under ``lane_prefix``; a prefix with no keys is fine."""
        # Consul answers a recursive DELETE of nothing with success, so no existence check.
        self.client.kv.delete(folder(lane_prefix), recurse=True)

    def get(self, key: str) -> bytes | None:
        """The raw value of ``key``, or None when it does not exist."""
        _index, entry = self.client.kv.get(key.lstrip("/"))
        if entry is None:
            return None
        value = entry.get("Value")
        return bytes(value) if value is not None else b""

    def keys(self, prefix: str) -> list[str]:
        """Every key under ``prefix`` (sorted), e.g. for a janitor listing lane prefixes."""
        return sorted(str(entry["Key"]) for entry in self._entries(folder(prefix)))

    def _entries(self, prefix: str) -> list[dict[str, Any]]:
        _index, entries = self.client.kv.get(prefix, recurse=True)
        # A recursive GET of a prefix with no keys is a 404, which py-consul maps to None.
        # Consul matches a raw string prefix; the folder's trailing slash keeps siblings out.
        return [e for e in entries or [] if str(e["Key"]).startswith(prefix)]
