"""An HTTP fake of Harbor's API v2.0 (artifacts), with basic auth, recording every request.

`running_harbor()` serves on 127.0.0.1:<free port> from a thread. Paths served, as Harbor
documents them (a repository with slashes is URL-encoded twice in the path):

* ``GET    /api/v2.0/projects/<project>/repositories/<repository>/artifacts/<reference>``
* ``DELETE /api/v2.0/projects/<project>/repositories/<repository>/artifacts/<reference>``

``reference`` is a digest or one of the artifact's tags. Deleting an artifact deletes its tags.
Wrong or missing credentials → 401 with Harbor's error body.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.support.jenkins_fake import serve


@dataclass(frozen=True)
class Call:
    method: str
    raw_path: str  # exactly as sent (still encoded)
    user: str  # "" when the request carried no (valid) basic auth


@dataclass
class HarborFake:
    """State and call log of one fake Harbor."""

    username: str = "admin"
    password: str = "Harbor12345"
    url: str = ""
    # (project, repository) → digest → tags
    artifacts: dict[tuple[str, str], dict[str, set[str]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, project: str, repository: str, digest: str, *tags: str) -> None:
        self.artifacts.setdefault((project, repository), {})[digest] = set(tags)

    def has(self, project: str, repository: str, reference: str) -> bool:
        return self._find(project, repository, reference) is not None

    def _find(self, project: str, repository: str, reference: str) -> str | None:
        for digest, tags in self.artifacts.get((project, repository), {}).items():
            if reference == digest or reference in tags:
                return digest
        return None

    def _user(self, authorization: str) -> str:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return ""
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return ""
        return user if (user, password) == (self.username, self.password) else ""

    def handle(self, method: str, raw_path: str, authorization: str,
               _headers: Mapping[str, str], _body: bytes) -> tuple[int, dict[str, str], bytes]:
        user = self._user(authorization)
        path = urlsplit(raw_path).path
        with self.lock:
            self.calls.append(Call(method, path, user))
            if not user:
                return _error(401, "UNAUTHORIZED", "unauthorized")
            parts = path.split("/")
            # "", api, v2.0, projects, <p>, repositories, <r>, artifacts, <ref>
            if (len(parts) != 9 or parts[1:4] != ["api", "v2.0", "projects"]
                    or parts[5] != "repositories" or parts[7] != "artifacts"):
                return _error(404, "NOT_FOUND", "not found")
            project, repository = parts[4], unquote(unquote(parts[6]))
            reference = unquote(parts[8])
            digest = self._find(project, repository, reference)
            if digest is None:
                return _error(404, "NOT_FOUND",
                              f"artifact {project}/{repository}@{reference} not found")
            if method == "GET":
                tags = sorted(self.artifacts[(project, repository)][digest])
                return _json(200, {"digest": digest, "type": "IMAGE",
                                   "tags": [{"name": tag} for tag in tags]})
            if method == "DELETE":
                del self.artifacts[(project, repository)][digest]
                return 200, {}, b""
            return _error(405, "METHOD_NOT_ALLOWED", "method not allowed")


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return _json(status, {"errors": [{"code": code, "message": message}]})


@contextmanager
def running_harbor(username: str = "admin", password: str = "Harbor12345") -> Iterator[HarborFake]:
    """A fake Harbor accepting ``username``/``password`` until the block ends."""
    fake = HarborFake(username=username, password=password)
    server, fake.url = serve(fake.handle)
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
