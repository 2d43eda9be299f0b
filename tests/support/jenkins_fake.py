"""An HTTP fake of the Jenkins REST API, at the level ``python-jenkins`` uses it.

`running_jenkins()` serves on 127.0.0.1:<free port> from a thread and records every request.
Builds are scripted per job with :class:`JobScript`: how long the item stays queued, how many
polls the build runs for, its result, description and console text. ``/stop`` aborts a build.

Paths served (those python-jenkins 1.8.3 requests):

* ``GET  /crumbIssuer/api/json`` → 404 (no CSRF protection, so no crumb header)
* ``POST /job/<name>/buildWithParameters?K=V`` → 201 with ``Location: <url>/queue/item/<n>/``
* ``GET  /queue/item/<n>/api/json?depth=0`` → ``why`` while queued, then ``executable``
* ``POST /queue/cancelItem?id=<n>``
* ``GET  /job/<name>/<num>/api/json?depth=0`` → ``building``/``result``/``description``/``url``
* ``GET  /job/<name>/<num>/consoleText``
* ``POST /job/<name>/<num>/stop``

and, for lane folders and jobs (``integrations.jenkins.lanes``):

* ``POST [/job/<folder>]/createItem?name=<n>`` with a config.xml body → 200; 400 when the item
  exists, 404 when the folder doesn't (as Jenkins). A ``Folder`` root element makes a folder.
* ``GET|POST /job/<name>/config.xml`` → the stored config / replace it
* ``POST /job/<name>/doDelete`` → 200 (a folder goes with everything in it); 404 when missing
* ``GET  /job/<name>/api/json`` → ``name``, ``fullName``, ``_class`` and, for a folder, ``jobs``;
  404 when missing

A job in folders (``shop/cart``) is served under ``/job/shop/job/cart/...``, as Jenkins does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str = ""
    body: str = ""  # request body (config.xml of createItem / config.xml POSTs)


@dataclass
class JobScript:
    """How builds of one job behave."""

    result: str = "SUCCESS"
    queued_polls: int = 1  # queue item polls answered with "why" before the build starts
    running_polls: int = 2  # build info polls answered with building=true
    description: str = "IMAGE=registry.test/app:v1\nDIGEST=sha256:" + "ab" * 32
    console: str = "Started by user slipway\nBuilding...\nFinished: SUCCESS\n"


@dataclass
class _Build:
    job: str
    number: int
    script: JobScript
    polls: int = 0
    stopped: bool = False


@dataclass
class JenkinsFake:
    """State and call log of one fake Jenkins."""

    url: str = ""
    jobs: dict[str, JobScript] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    queue: dict[int, dict[str, Any]] = field(default_factory=dict)
    builds: dict[tuple[str, int], _Build] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Items created through the API: full name ("lane" or "lane/app") -> config.xml.
    items: dict[str, str] = field(default_factory=dict)

    def is_folder(self, name: str) -> bool:
        return _FOLDER_CLASS in self.items.get(name, "")

    def children(self, folder: str) -> list[str]:
        """Full names of the items directly inside ``folder``."""
        return sorted(name for name in self.items
                      if name.rpartition("/")[0] == folder and name != folder)

    def paths(self, method: str | None = None) -> list[str]:
        return [c.path for c in self.calls if method is None or c.method == method]

    def handle(self, method: str, raw_path: str, auth: str,
               body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        path = unquote(split.path)
        text = body.decode("utf-8", "replace")
        with self.lock:
            self.calls.append(Call(method, path, query, auth, text))
            parts = [p for p in path.split("/") if p]
            return self._route(method, parts, query, text)

    def _route(self, method: str, parts: list[str], query: dict[str, str],
               body: str = "") -> tuple[int, dict[str, str], bytes]:
        if parts == ["crumbIssuer", "api", "json"]:
            return 404, {}, b"no crumbs here"
        if method == "GET" and parts[:2] == ["queue", "item"] and len(parts) == 5:
            return self._queue_item(int(parts[2]))
        if method == "POST" and parts == ["queue", "cancelItem"]:
            self.queue.get(int(query["id"]), {})["cancelled"] = True
            return 302, {"Location": f"{self.url}/queue/"}, b""
        job, rest = _job_name(parts)
        if job and method == "POST" and rest == ["buildWithParameters"]:
            return self._trigger(job)
        if job and rest and rest[0].isdigit():
            build = self.builds.get((job, int(rest[0])))
            if build is None:
                return 404, {}, b"no such build"
            if method == "GET" and rest[1:] == ["api", "json"]:
                return self._build_info(build)
            if method == "GET" and rest[1:] == ["consoleText"]:
                return 200, {"Content-Type": "text/plain"}, build.script.console.encode()
            if method == "POST" and rest[1:] == ["stop"]:
                build.stopped = True
                return 200, {}, b""
        return self._items(method, job, rest, query, body)

    def _items(self, method: str, job: str, rest: list[str], query: dict[str, str],
               body: str) -> tuple[int, dict[str, str], bytes]:
        """Create, read, reconfigure and delete folders and jobs."""
        if method == "POST" and rest == ["createItem"]:
            name = f"{job}/{query.get('name', '')}" if job else query.get("name", "")
            if job and not self.is_folder(job):
                return 404, {}, b"no such folder"
            if not query.get("name") or name in self.items or name in self.jobs:
                return 400, {}, b"A job already exists with the name"
            self.items[name] = body
            return 200, {}, b""
        if not job or (job not in self.items and job not in self.jobs):
            return 404, {}, b"not found"
        if rest == ["config.xml"] and method == "GET":
            return 200, {"Content-Type": "application/xml"}, self.items.get(job, "").encode()
        if rest == ["config.xml"] and method == "POST":
            self.items[job] = body
            return 200, {}, b""
        if rest == ["doDelete"] and method == "POST":
            for name in [n for n in self.items if n == job or n.startswith(job + "/")]:
                del self.items[name]
            # Jenkins answers 302 to the parent; 200 keeps requests from following it.
            return 200, {}, b""
        if rest == ["api", "json"] and method == "GET":
            info: dict[str, Any] = {"name": job.rpartition("/")[2], "fullName": job,
                                    "url": f"{self.url}/{_job_path(job)}/"}
            if self.is_folder(job):
                info["_class"] = _FOLDER_CLASS
                info["jobs"] = [{"name": child.rpartition("/")[2],
                                 "url": f"{self.url}/{_job_path(child)}/"}
                                for child in self.children(job)]
            else:
                info["_class"] = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
            return _json(info)
        return 404, {}, b"not found"

    def _trigger(self, job: str) -> tuple[int, dict[str, str], bytes]:
        script = self.jobs.get(job)
        if script is None:
            return 404, {}, b"no such job"
        number = len(self.queue) + 1
        self.queue[number] = {"job": job, "polls": 0, "build": None, "cancelled": False}
        return 201, {"Location": f"{self.url}/queue/item/{number}/"}, b""

    def _queue_item(self, number: int) -> tuple[int, dict[str, str], bytes]:
        item = self.queue.get(number)
        if item is None:
            return 404, {}, b"no such queue item"
        job = item["job"]
        body: dict[str, Any] = {"id": number, "task": {"name": job}, "cancelled": item["cancelled"]}
        if item["build"] is None and not item["cancelled"]:
            if item["polls"] < self.jobs[job].queued_polls:
                item["polls"] += 1
                body["why"] = "Waiting for next available executor"
                return _json(body)
            build_number = sum(1 for key in self.builds if key[0] == job) + 1
            self.builds[(job, build_number)] = _Build(job, build_number, self.jobs[job])
            item["build"] = build_number
        if item["build"] is not None:
            body["executable"] = {"number": item["build"],
                                  "url": f"{self.url}/{_job_path(job)}/{item['build']}/"}
        return _json(body)

    def _build_info(self, build: _Build) -> tuple[int, dict[str, str], bytes]:
        running = not build.stopped and build.polls < build.script.running_polls
        build.polls += 1
        if running:
            result, description = None, None
        elif build.stopped:
            result, description = "ABORTED", None
        else:
            result = build.script.result
            description = build.script.description if result == "SUCCESS" else None
        return _json({"number": build.number, "building": running, "result": result,
                      "description": description,
                      "url": f"{self.url}/{_job_path(build.job)}/{build.number}/",
                      "fullDisplayName": f"{build.job} #{build.number}"})


_FOLDER_CLASS = "com.cloudbees.hudson.plugins.folder.Folder"


def _job_name(parts: list[str]) -> tuple[str, list[str]]:
    """Split ``job/a/job/b/<rest>`` (folders) into the full name ``a/b`` and ``rest``."""
    names: list[str] = []
    while len(parts) >= 2 and parts[0] == "job":
        names.append(parts[1])
        parts = parts[2:]
    return "/".join(names), parts


def _job_path(job: str) -> str:
    return "/".join(f"job/{name}" for name in job.split("/"))


def _json(body: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def serve(handle: Any) -> tuple[ThreadingHTTPServer, str]:
    """Serve ``handle(method, path, authorization, headers, body)`` on a free loopback port."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = handle(self.command, self.path,
                                              self.headers.get("Authorization", ""),
                                              self.headers, body)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@contextmanager
def running_jenkins(jobs: dict[str, JobScript] | None = None) -> Iterator[JenkinsFake]:
    """A fake Jenkins serving the given jobs until the block ends."""
    fake = JenkinsFake(jobs=dict(jobs or {}))
    server, fake.url = serve(
        lambda method, path, auth, _headers, body: fake.handle(method, path, auth, body))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
