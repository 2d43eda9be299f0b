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
def running_gitlab(projects: dict[str, PipelineScript] | None = None) -> Iterator[GitlabFake]:
    """A fake GitLab serving the given projects (path → pipeline script) until the block ends."""
    fake = GitlabFake(projects=dict(projects or {}))
    server, fake.url = serve(
        lambda method, path, _auth, headers, body: fake.handle(method, path, headers, body))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
