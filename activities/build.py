"""Activity that builds (and pushes) an image: long-running, heartbeats, cancellable.

The build runs on whichever builder the application's rule names (Docker engine, Jenkins job
or GitLab CI pipeline, see :mod:`integrations.builders`). Every builder reports progress
through the activity's :class:`activities.support.Pulse`, whose heartbeat is also how a
cancelled activity learns it must stop; remote builders then stop the Jenkins build or cancel
the pipeline. Remote builders checkpoint the queue id / pipeline id in the heartbeat details:
a retry after a lost worker follows the same CI build instead of starting a duplicate.
"""

from __future__ import annotations

from temporalio import activity

from activities.support import heartbeating, permanent
from integrations.build_output import BuildFailedError
from integrations.builders import BuilderConfigError, BuilderRouter
from integrations.docker.builder import SourceError
from schemas.models import BuildInput, ImageSpec


class BuildActivities:
    def __init__(self, builder: BuilderRouter) -> None:
        self.builder = builder

    @activity.defn
    def build_image(self, data: BuildInput) -> ImageSpec:
        """Build the app's source at the ref with the version label; return image + digest."""
        # A failed build, a missing source or a misconfigured builder fail the same way on a
        # retry: end the release with the message (build URL and log tail) instead.
        with heartbeating(f"building {data.app}:{data.version_label}") as pulse, \
                permanent(BuildFailedError, SourceError, BuilderConfigError):
            return self.builder.build(data, pulse.progress, resume=pulse.resumed,
                                      remember=pulse.remember)
