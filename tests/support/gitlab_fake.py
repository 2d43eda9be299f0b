"""An HTTP fake of the GitLab REST API (v4), at the level ``python-gitlab`` uses it for CI.

`running_gitlab()` serves on 127.0.0.1:<free port> from a thread and records every request.
Pipelines are scripted per project with :class:`PipelineScript`: how many polls they run,
their final status and the jobs (with traces) they hold. ``/cancel`` cancels a pipeline.

Paths served (those python-gitlab 8.6.0 requests):

* ``GET  /api/v4/projects/<id or url-encoded path>``
* ``POST /api/v4/projects/<id>/pipeline`` (JSON body: ``ref``, ``variables``)
* ``GET  /api/v4/projects/<id>/pipelines/<pid>``
* ``POST /api/v4/projects/<id>/pipelines/<pid>/cancel``
* ``GET  /api/v4/projects/<id>/pipelines/<pid>/jobs``
* ``GET  /api/v4/projects/<id>/jobs/<jid>/trace``

and for the code host (state per project in :class:`FakeRepo`):

* ``GET|DELETE /api/v4/projects/<id>/repository/branches/<name>``, ``POST …/branches``
* ``GET|POST   /api/v4/projects/<id>/repository/tags``
* ``GET|POST   /api/v4/projects/<id>/hooks``, ``PUT|DELETE …/hooks/<hid>``
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.support.jenkins_fake import serve

DIGEST = "sha256:" + "ef" * 32


@dataclass(frozen=True)
class Call:
    """One request the fake received."""

    method: str
    path: str  # with each segment url-decoded, so project paths read naturally
    query: dict[str, str]
    body: Any
    token: str = ""


@dataclass
class FakeJob:
    name: str
    status: str = "success"
    trace: str = ""


@dataclass
class PipelineScript:
    """How pipelines of one project behave."""

    status: str = "success"
    running_polls: int = 2  # GETs of the pipeline answered "running" before the final status
    jobs: list[FakeJob] = field(default_factory=lambda: [
        FakeJob("test", trace="running tests\nok\n"),
        FakeJob("image", trace=f"pushing\nIMAGE=registry.test/app:v1\nDIGEST={DIGEST}\n"),
    ])


@dataclass
class FakeRepo:
    """Branches (name → sha), tags (name → sha) and webhooks of one project."""

    branches: dict[str, str] = field(default_factory=lambda: {"main": "c" * 40})
    tags: dict[str, str] = field(default_factory=dict)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → body (with token)


@dataclass
class _Pipeline:
    id: int
    project_id: int
    ref: str
    variables: list[dict[str, str]]
    script: PipelineScript
    polls: int = 0
    cancelled: bool = False
    job_ids: list[int] = field(default_factory=list)


@dataclass
class GitlabFake:
    """State and call log of one fake GitLab."""

    url: str = ""
    projects: dict[str, PipelineScript] = field(default_factory=dict)  # path → script
    calls: list[Call] = field(default_factory=list)
    pipelines: dict[int, _Pipeline] = field(default_factory=dict)
    jobs: dict[int, FakeJob] = field(default_factory=dict)
    repos: dict[str, FakeRepo] = field(default_factory=dict)  # path → repository state
    next_hook_id: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)

    def project_id(self, path: str) -> int:
        return list(self.projects).index(path) + 1

    def paths(self, method: str | None = None) -> list[str]:
        return [c.path for c in self.calls if method is None or c.method == method]

    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        split = urlsplit(raw_path)
        parts = [unquote(p) for p in split.path.split("/") if p]
        payload = json.loads(body) if body else None
        with self.lock:
            self.calls.append(Call(method, "/" + "/".join(parts),
                                   dict(parse_qsl(split.query)), payload,
                                   headers.get("PRIVATE-TOKEN", "")))
            if parts[:2] != ["api", "v4"] or len(parts) < 4 or parts[2] != "projects":
                return _json(404, {"message": "404 Not Found"})
            return self._route(method, parts[3], parts[4:], payload)

    def _project(self, ref: str) -> tuple[int, str] | None:
        for index, path in enumerate(self.projects, start=1):
            if ref in (str(index), path):
                return index, path
        return None

    def _route(self, method: str, project_ref: str, rest: list[str],
               payload: Any) -> tuple[int, dict[str, str], bytes]:
        found = self._project(project_ref)
        if found is None:
            return _json(404, {"message": "404 Project Not Found"})
        project_id, path = found
        if method == "GET" and not rest:
            return _json(200, {"id": project_id, "path_with_namespace": path,
                               "web_url": f"{self.url}/{path}"})
        if method == "POST" and rest == ["pipeline"]:
            return self._create(project_id, path, payload or {})
        if len(rest) >= 2 and rest[0] == "pipelines" and rest[1].isdigit():
            pipeline = self.pipelines.get(int(rest[1]))
            if pipeline is None or pipeline.project_id != project_id:
                return _json(404, {"message": "404 Not found"})
            if method == "GET" and len(rest) == 2:
                return _json(200, self._pipeline_body(pipeline, path, poll=True))
            if method == "POST" and rest[2:] == ["cancel"]:
                pipeline.cancelled = True
                return _json(201, self._pipeline_body(pipeline, path, poll=False))
            if method == "GET" and rest[2:] == ["jobs"]:
                return _json(200, [self._job_body(jid, pipeline) for jid in pipeline.job_ids])
        if method == "GET" and len(rest) == 3 and rest[0] == "jobs" and rest[2] == "trace":
            job = self.jobs.get(int(rest[1]))
            if job is None:
                return _json(404, {"message": "404 Not found"})
            return 200, {"Content-Type": "text/plain"}, job.trace.encode()
        if rest and rest[0] in ("repository", "hooks"):
            repo = self.repos.setdefault(path, FakeRepo())
            return self._repository(method, project_id, repo, rest, payload or {})
        return _json(404, {"message": "404 Not Found"})

    def _repository(self, method: str, project_id: int, repo: FakeRepo, rest: list[str],
                    payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        def branch(name: str) -> dict[str, Any]:
            return {"name": name, "commit": {"id": repo.branches[name]}, "protected": False,
                    "merged": False, "default": name == "main"}

        def tag(name: str) -> dict[str, Any]:
            return {"name": name, "commit": {"id": repo.tags[name]}, "target": repo.tags[name],
                    "message": None, "protected": False}

        def hook(hook_id: int) -> dict[str, Any]:
            body = {k: v for k, v in repo.hooks[hook_id].items() if k != "token"}
            return {"id": hook_id, "project_id": project_id, **body}

        if rest[:2] == ["repository", "branches"]:
            if len(rest) == 3:
                name = rest[2]
                if name not in repo.branches:
                    return _json(404, {"message": "404 Branch Not Found"})
                if method == "GET":
                    return _json(200, branch(name))
                if method == "DELETE":
                    del repo.branches[name]
                    return 204, {}, b""
            if len(rest) == 2 and method == "GET":
                return _json(200, [branch(name) for name in repo.branches])
            if len(rest) == 2 and method == "POST":
                name, ref = str(payload.get("branch", "")), str(payload.get("ref", ""))
                if name in repo.branches:
                    return _json(400, {"message": "Branch already exists"})
                sha = repo.branches.get(ref) or repo.tags.get(ref) or (
                    ref if len(ref) == 40 else "")
                if not name or not sha:
                    return _json(400, {"message": "Invalid reference name"})
                repo.branches[name] = sha
                return _json(201, branch(name))
        if rest[:2] == ["repository", "tags"] and len(rest) == 2:
            if method == "GET":
                return _json(200, [tag(name) for name in repo.tags])
            if method == "POST":
                name, ref = str(payload.get("tag_name", "")), str(payload.get("ref", ""))
                if name in repo.tags:
                    return _json(400, {"message": f"Tag {name} already exists"})
                sha = repo.branches.get(ref) or repo.tags.get(ref) or (
                    ref if len(ref) == 40 else "")
                if not name or not sha:
                    return _json(400, {"message": "Target " + ref + " is invalid"})
                repo.tags[name] = sha
                return _json(201, tag(name))
        if rest[0] == "hooks" and len(rest) == 1:
            if method == "GET":
                return _json(200, [hook(hid) for hid in repo.hooks])
            if method == "POST":
                if not payload.get("url"):
                    return _json(400, {"message": "url is missing"})
                hook_id, self.next_hook_id = self.next_hook_id, self.next_hook_id + 1
                repo.hooks[hook_id] = {"url": payload["url"], "token": payload.get("token", ""),
                                       "push_events": payload.get("push_events", True),
                                       "tag_push_events": payload.get("tag_push_events", False)}
                return _json(201, hook(hook_id))
        if rest[0] == "hooks" and len(rest) == 2 and rest[1].isdigit():
            hook_id = int(rest[1])
            if hook_id not in repo.hooks:
                return _json(404, {"message": "404 Not found"})
            if method == "GET":
                return _json(200, hook(hook_id))
            if method == "PUT":
                repo.hooks[hook_id].update({k: v for k, v in payload.items() if k in (
                    "url", "token", "push_events", "tag_push_events")})
                return _json(200, hook(hook_id))
            if method == "DELETE":
                del repo.hooks[hook_id]
                return 204, {}, b""
        return _json(404, {"message": "404 Not Found"})

    def _create(self, project_id: int, path: str,
                payload: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if not payload.get("ref"):
            return _json(400, {"message": "ref is missing"})
        pipeline = _Pipeline(len(self.pipelines) + 100, project_id, payload["ref"],
                             payload.get("variables", []), self.projects[path])
        for job in pipeline.script.jobs:
            job_id = len(self.jobs) + 1000
            self.jobs[job_id] = job
            pipeline.job_ids.append(job_id)
        self.pipelines[pipeline.id] = pipeline
        body = self._pipeline_body(pipeline, path, poll=False)
        body["status"] = "created"
        return _json(201, body)

    def _status(self, pipeline: _Pipeline) -> str:
        if pipeline.cancelled:
            return "canceled"
        if pipeline.polls <= pipeline.script.running_polls:
            return "running"
        return pipeline.script.status

    def _pipeline_body(self, pipeline: _Pipeline, path: str, poll: bool) -> dict[str, Any]:
        if poll:
            pipeline.polls += 1
        return {"id": pipeline.id, "project_id": pipeline.project_id, "ref": pipeline.ref,
                "status": self._status(pipeline),
                "web_url": f"{self.url}/{path}/-/pipelines/{pipeline.id}"}

    def _job_body(self, job_id: int, pipeline: _Pipeline) -> dict[str, Any]:
        job = self.jobs[job_id]
        status = "canceled" if pipeline.cancelled else job.status
        return {"id": job_id, "name": job.name, "status": status,
                "pipeline": {"id": pipeline.id}}


def _json(status: int, body: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@contextmanager
def running_gitlab(projects: dict[str, PipelineScript] | None = None,
                   repos: dict[str, FakeRepo] | None = None) -> Iterator[GitlabFake]:
    """A fake GitLab serving the given projects (path → pipeline script) and repositories
    (path → branches, tags, hooks) until the block ends."""
    fake = GitlabFake(projects=dict(projects or {}), repos=dict(repos or {}))
    for path in fake.repos:
        fake.projects.setdefault(path, PipelineScript())
    server, fake.url = serve(
        lambda method, path, _auth, headers, body: fake.handle(method, path, headers, body))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
