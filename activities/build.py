"""Activity that builds (and pushes) an image: long-running, heartbeats, cancellable."""

from __future__ import annotations

from temporalio import activity

from activities.support import permanent, progress
from integrations.docker_builder import BuildFailedError, DockerBuilder, SourceError
from schemas.models import BuildInput, ImageSpec


class BuildActivities:
    def __init__(self, builder: DockerBuilder) -> None:
        self.builder = builder

    @activity.defn
    def build_image(self, data: BuildInput) -> ImageSpec:
        """Build the app's source at the ref with the version label; return image + digest."""
        with permanent(BuildFailedError, SourceError):
            return self.builder.build(data.app, data.source, data.ref, data.version_label,
                                      progress=progress)
