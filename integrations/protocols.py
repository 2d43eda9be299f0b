"""The two seams between Slipway's activities and a cluster: what runs, and what gets traffic.

Docker clusters implement them with ``DockerRuntime`` + ``HaproxyTraffic``; Kubernetes
clusters with a Deployment-per-version runtime and a Service-label router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from schemas.models import (
    DrainInput,
    EnsureFrontendInput,
    ImageSpec,
    Instance,
    StartVersionInput,
    TrafficInput,
    VersionRef,
)

Progress = Callable[[str], None]


class Runtime(Protocol):
    """Runs replicas of image versions and reports on them."""

    def inspect_image(self, image: str) -> ImageSpec: ...

    def start_version(self, spec: StartVersionInput, progress: Progress | None = None) -> None: ...

    def versions(self, env_key: str, namespace: str = "default") -> list[int]: ...

    def wait_ready(self, ref: VersionRef, replicas: int, port: int, health_path: str,
                   deadline_seconds: float, progress: Progress | None = None) -> list[Instance]:
        ...

    def check_health(self, ref: VersionRef, replicas: int, port: int,
                     health_path: str) -> list[str]: ...

    def stop_version(self, ref: VersionRef) -> None: ...

    def remove_version(self, ref: VersionRef) -> None: ...


class TrafficRouter(Protocol):
    """Decides which instances receive requests; draining lets in-flight requests finish."""

    def ensure_frontend(self, data: EnsureFrontendInput) -> None: ...

    def add(self, data: TrafficInput) -> None: ...

    def drain(self, data: DrainInput, progress: Progress | None = None) -> None: ...

    def remove(self, data: DrainInput) -> None: ...

    def remove_frontend(self, data: EnsureFrontendInput) -> None: ...
