"""A ``Builder`` that runs a parameterised Jenkins job (``python-jenkins``).

The job contract, which every Jenkins job used by Slipway must honour:

* it takes the string parameters ``REF`` (branch, tag or commit to build), ``VERSION`` (the
  version label the image is tagged with) and ``NOTE`` (free text for humans);
* it builds and pushes the image itself;
* its last step sets the **build description** to lines naming what it pushed::

      IMAGE=registry.example.com/shop/cart:v42
      DIGEST=sha256:0123...

  (e.g. ``currentBuild.description = "IMAGE=${image}\\nDIGEST=${digest}"`` in a pipeline).
  A successful build without an ``IMAGE=`` line is treated as a failed build: Slipway cannot
  release what it cannot name.

The builder follows the queue item to the build number, polls the build and reports progress
(each report is a Temporal heartbeat). It hands the queue id and then the build number to
``remember`` as soon as it has them; a retried build passes them back as ``resume`` and
follows the same Jenkins build instead of queueing a second one. When the progress callback
raises, the activity was cancelled: the build is stopped (or the queue item cancelled) before
the error propagates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import jenkins

from integrations.build_output import (
    BuildFailedError,
    Remember,
    log_tail,
    parse_image_lines,
    report,
)
from integrations.protocols import Progress
from schemas.models import ImageSpec

log = logging.getLogger(__name__)


class JenkinsBuilder:
    """Builds images by triggering a Jenkins job and following it to its result."""

    def __init__(self, url: str, username: str, token: str, poll_interval: float = 5.0,
                 timeout: float = 30.0) -> None:
        self.url = url
        self.poll_interval = poll_interval
        # Each request gets a timeout so a hung Jenkins can't outlive the heartbeat timeout.
        self.server = jenkins.Jenkins(url, username=username or None, password=token or None,
                                      timeout=timeout)

    def build(self, app: str, source: str, ref: str | None, version_label: str,
              progress: Progress | None = None, *, job: str, note: str = "",
              resume: Mapping[str, Any] | None = None,
              remember: Remember | None = None) -> ImageSpec:
        """Run ``job`` for ``ref`` labelled ``version_label``; return the pushed image.

        ``resume`` is what an earlier attempt remembered (``jenkins_queue_id``,
        ``jenkins_build``) for the same job: that build is followed, none is queued anew.
        """
        resume = resume if resume and resume.get("jenkins_job") == job else {}
        note_down = remember or (lambda _values: None)
        number = int(resume.get("jenkins_build") or 0)
        if not number:
            queue_id = int(resume.get("jenkins_queue_id") or 0)
            if not queue_id:
                # The Jenkins job owns its checkout (its SCM config): ``source`` is informational.
                parameters = {"REF": ref or "", "VERSION": version_label, "NOTE": note}
                queue_id = self.server.build_job(job, parameters)
                note_down({"jenkins_job": job, "jenkins_queue_id": queue_id})
            number = self._wait_for_start(job, queue_id, app, progress)
            note_down({"jenkins_job": job, "jenkins_queue_id": queue_id, "jenkins_build": number})
        info = self._wait_for_end(job, number, progress)
        job_path = "/".join(f"job/{name}" for name in job.split("/"))  # folders: job/a/job/b
        build_url = str(info.get("url") or f"{self.url.rstrip('/')}/{job_path}/{number}/")
        result = info.get("result")
        if result != "SUCCESS":
            raise BuildFailedError(self._failure(job, number, build_url, f"ended {result}"))
        found = parse_image_lines(str(info.get("description") or ""))
        if "IMAGE" not in found:
            raise BuildFailedError(self._failure(
                job, number, build_url, "succeeded but its description has no IMAGE= line"))
        return ImageSpec(image=found["IMAGE"], digest=found.get("DIGEST", ""))

    def _wait_for_start(self, job: str, queue_id: int, app: str,
                        progress: Progress | None) -> int:
        """Follow the queue item until an executor picks it up; return the build number."""
        def cancel_queued() -> None:
            self.server.cancel_queue(queue_id)

        while True:
            item: Mapping[str, Any] = self.server.get_queue_item(queue_id)
            executable = item.get("executable")
            if isinstance(executable, Mapping) and executable.get("number") is not None:
                return int(executable["number"])
            if item.get("cancelled"):
                raise BuildFailedError(f"Jenkins job {job} for {app} was cancelled in the queue")
            why = item.get("why") or "waiting"
            report(progress, f"{job}: queued ({why})", cancel_queued)
            time.sleep(self.poll_interval)

    def _wait_for_end(self, job: str, number: int,
                      progress: Progress | None) -> Mapping[str, Any]:
        """Poll the build until it is no longer running; return its last build info."""
        def stop() -> None:
            self.server.stop_build(job, number)

        while True:
            info: Mapping[str, Any] = self.server.get_build_info(job, number)
            if not info.get("building") and info.get("result") is not None:
                return info
            report(progress, f"{job} #{number}: building", stop)
            time.sleep(self.poll_interval)

    def _failure(self, job: str, number: int, build_url: str, what: str) -> str:
        try:
            tail = log_tail(self.server.get_build_console_output(job, number))
        except jenkins.JenkinsException as error:
            tail = f"(console output unavailable: {error})"
        return f"Jenkins build {job} #{number} {what}: {build_url}\n{tail}"
