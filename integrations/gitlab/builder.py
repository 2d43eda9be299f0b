"""A ``Builder`` that runs a GitLab CI pipeline (``python-gitlab``).

The pipeline contract, which every project built by Slipway must honour:

* the pipeline is created on the ref being released with the variables ``VERSION`` (the
  version label the image is tagged with) and ``NOTE`` (free text for humans);
* it builds and pushes the image itself;
* its **last job** prints, on lines of their own in its log (trace), what it pushed, the way a
  dotenv report would hold them::

      IMAGE=registry.example.com/shop/cart:v42
      DIGEST=sha256:0123...

  (e.g. ``echo "IMAGE=$IMAGE"; echo "DIGEST=$(crane digest "$IMAGE")"``). A successful pipeline
  whose last job prints no ``IMAGE=`` line is treated as failed.

The builder polls the pipeline and reports progress (each report is a Temporal heartbeat). It
hands the pipeline id to ``remember`` once created; a retried build passes it back as
``resume`` and follows that pipeline instead of creating a second one.
When the progress callback raises, the activity was cancelled: the pipeline is cancelled
before the error propagates.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import gitlab
from gitlab.v4.objects import Project, ProjectPipeline

from integrations.build_output import (
    BuildFailedError,
    Remember,
    log_tail,
    parse_image_lines,
    report,
)
from integrations.protocols import Progress
from schemas.models import ImageSpec

FINISHED = {"success", "failed", "canceled", "skipped"}


class GitlabBuilder:
    """Builds images by creating a GitLab CI pipeline and following it to its result."""

    def __init__(self, url: str, token: str, poll_interval: float = 5.0,
                 timeout: float = 30.0) -> None:
        self.poll_interval = poll_interval
        # Each request gets a timeout so a hung GitLab can't outlive the heartbeat timeout.
        self.client = gitlab.Gitlab(url, private_token=token or None, timeout=timeout)

    def build(self, app: str, source: str, ref: str | None, version_label: str,
              progress: Progress | None = None, *, project: str,
              note: str = "", resume: Mapping[str, Any] | None = None,
              remember: Remember | None = None) -> ImageSpec:
        """Run ``project``'s pipeline on ``ref`` with ``VERSION``; return the pushed image.

        ``resume`` is what an earlier attempt remembered (``gitlab_pipeline_id`` of the same
        project): that pipeline is followed, none is created anew.
        """
        if not ref:
            raise BuildFailedError(f"a GitLab pipeline for {app} needs a ref to build")
        target: Project = self.client.projects.get(project)
        resume = resume if resume and resume.get("gitlab_project") == project else {}
        pipeline: ProjectPipeline
        if resume.get("gitlab_pipeline_id"):
            pipeline = target.pipelines.get(int(resume["gitlab_pipeline_id"]))
        else:
            variables = [{"key": "VERSION", "value": version_label}]
            if note:
                variables.append({"key": "NOTE", "value": note})
            pipeline = target.pipelines.create({"ref": ref, "variables": variables})
            if remember is not None:
                remember({"gitlab_project": project, "gitlab_pipeline_id": pipeline.id})
        self._wait(pipeline, project, progress)
        jobs: list[Any] = sorted(pipeline.jobs.list(get_all=True), key=lambda job: job.id)
        if pipeline.status != "success":
            failed = [job for job in jobs if job.status == "failed"]
            job = (failed or jobs or [None])[-1]
            tail = log_tail(self._trace(target, job.id)) if job is not None else "(no jobs)"
            raise BuildFailedError(f"GitLab pipeline {pipeline.id} of {project} ended "
                                   f"{pipeline.status}: {pipeline.web_url}\n{tail}")
        trace = self._trace(target, jobs[-1].id) if jobs else ""
        found = parse_image_lines(trace)
        if "IMAGE" not in found:
            raise BuildFailedError(
                f"GitLab pipeline {pipeline.id} of {project} succeeded but its last job printed"
                f" no IMAGE= line: {pipeline.web_url}\n{log_tail(trace)}")
        return ImageSpec(image=found["IMAGE"], digest=found.get("DIGEST", ""))

    def _wait(self, pipeline: ProjectPipeline, project: str, progress: Progress | None) -> None:
        """Poll until the pipeline finishes; cancel it if the activity is cancelled."""
        def cancel() -> None:
            pipeline.cancel()

        while pipeline.status not in FINISHED:
            report(progress, f"{project} pipeline {pipeline.id}: {pipeline.status}", cancel)
            time.sleep(self.poll_interval)
            pipeline.refresh()

    @staticmethod
    def _trace(target: Project, job_id: int) -> str:
        raw = target.jobs.get(job_id, lazy=True).trace()
        return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
