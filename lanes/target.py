"""Where a lane's apps run: the contract every lane target keeps.

A lane target creates the lane's namespace, runs one version of an app in the lane behind an
entry point of its own, swaps in a newer version (a push to ``feature/<lane>``), and removes
it all again. Every detail a later call needs is in the returned dict, which the workflow
keeps in the lane's ledger, so removal works from the ledger alone (even after a restart).
Implementations: ``lanes.docker_target`` (Docker engine + HAProxy) and
``lanes.kubernetes_target`` (a namespace per lane).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from integrations.protocols import Progress

LABEL_LANE = "slipway.lane"


@dataclass(frozen=True)
class LaneDeployment:
    """One app of a lane at one version: what to run and how the app's QA env runs it."""

    lane: str
    app: str
    image: str
    version: int
    ports: list[int]
    env_vars: dict[str, str] = field(default_factory=dict)
    cpu: str = ""
    memory: str = ""
    health_path: str = "/healthz"
    # The app's QA environment whose load balancer routes the lane's keyed requests here
    # ("" : none) and whether they get a 503 rather than the baseline while this is down.
    route_key: str = ""
    fail_closed: bool = False

    @property
    def port(self) -> int:
        return self.ports[0] if self.ports else 8080


class LaneTarget(Protocol):
    """The runtime side of a lane (Docker engine + HAProxy, or a Kubernetes namespace)."""

    def create_namespace(self, lane: str) -> dict[str, Any]: ...

    def delete_namespace(self, detail: dict[str, Any]) -> None: ...

    def deploy(self, want: LaneDeployment, progress: Progress | None = None) -> dict[str, Any]:
        """Run ``want`` until ready and put it behind the app's lane entry point."""
        ...

    def retire(self, detail: dict[str, Any], app: str) -> None:
        """Take the version ``detail`` describes out of rotation and remove it; the entry
        point stays (a newer version serves behind it)."""
        ...

    def remove(self, detail: dict[str, Any], app: str) -> None:
        """Remove the app from the lane: its entry point and the version ``detail`` names."""
        ...


def lane_env_key(app: str, lane: str) -> str:
    """The environment key of an app's lane deployment (containers, frontend, Service)."""
    return f"{app}-lane-{lane}"
