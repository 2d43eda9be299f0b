"""An HTTP fake of Consul's KV API (``/v1/kv``), at the level ``py-consul`` uses it.

`running_consul()` serves on 127.0.0.1:<free port> from a thread and records every request.
Paths served, as Consul documents them:

* ``GET    /v1/kv/<key>`` → ``[{"Key", "Value" (base64), "Flags", ...}]``; 404 when missing
* ``GET    /v1/kv/<prefix>?recurse`` → every entry whose key starts with the prefix; 404 if none
* ``PUT    /v1/kv/<key>[?flags=N]`` with the raw value as body → ``true``
* ``DELETE /v1/kv/<key>[?recurse]`` → ``true`` (also when nothing matched, as Consul does)

Every response carries ``X-Consul-Index``. When the fake has a token, a request without the
right ``X-Consul-Token`` header gets 403 "ACL not found", as Consul with ACLs enabled does.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.jenkins_fake import serve


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    key: str  # the KV key (path after /v1/kv/), decoded
    query: dict[str, str]
    token: str  # X-Consul-Token as sent ("" when absent)


@dataclass
class _Entry:
    value: bytes
    flags: int
    index: int


@dataclass
class ConsulFake:
    """State and call log of one fake Consul agent."""

    token: str = ""
    url: str = ""
    kv: dict[str, _Entry] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    index: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, key: str, value: bytes | str, flags: int = 0) -> None:
        """Seed a key (no call recorded)."""
        with self.lock:
            self._put(key, value.encode() if isinstance(value, str) else value, flags)

    def values(self, prefix: str = "") -> dict[str, bytes]:
        """Keys under ``prefix`` and their values."""
        return {k: e.value for k, e in sorted(self.kv.items()) if k.startswith(prefix)}

    def writes(self) -> list[tuple[str, str]]:
        """(method, key) of every PUT and DELETE, in order."""
        return [(c.method, c.key) for c in self.calls if c.method in ("PUT", "DELETE")]

    def _put(self, key: str, value: bytes, flags: int) -> None:
        self.index += 1
        self.kv[key] = _Entry(value, flags, self.index)

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        path = unquote(split.path)
        token = headers.get("X-Consul-Token") or ""
        with self.lock:
            if not path.startswith("/v1/kv/"):
                return 404, {}, b"not found"
            key = path[len("/v1/kv/"):]
            self.calls.append(Call(method, key, query, token))
            if self.token and token != self.token:
                return 403, {}, b"ACL not found"
            status, payload = self._route(method, key, query, body)
            return status, {"Content-Type": "application/json",
                            "X-Consul-Index": str(self.index)}, payload

    def _route(self, method: str, key: str, query: dict[str, str],
               body: bytes) -> tuple[int, bytes]:
        recurse = "recurse" in query
        matching = sorted(k for k in self.kv if (k.startswith(key) if recurse else k == key))
        if method == "GET":
            if not matching:
                return 404, b""
            return 200, json.dumps([self._render(k) for k in matching]).encode()
        if method == "PUT":
            self._put(key, body, int(query.get("flags") or 0))
            return 200, b"true"
        if method == "DELETE":
            for name in matching:
                del self.kv[name]
            self.index += 1
            return 200, b"true"
        return 405, b""

    def _render(self, key: str) -> dict[str, Any]:
        entry = self.kv[key]
        return {"Key": key, "Flags": entry.flags, "LockIndex": 0,
                "CreateIndex": entry.index, "ModifyIndex": entry.index,
                # Consul sends null for an empty value (e.g. a folder marker).
                "Value": base64.b64encode(entry.value).decode() if entry.value else None}


@contextmanager
def running_consul(token: str = "") -> Iterator[ConsulFake]:
    """A fake Consul KV requiring ``token`` (when non-empty) until the block ends."""
    fake = ConsulFake(token=token)
    server, fake.url = serve(
        lambda method, path, _auth, headers, body: fake.handle(method, path, headers, body))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
