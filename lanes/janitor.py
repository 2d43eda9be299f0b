"""Finding what lanes left behind: containers and load balancers of lanes with no workflow
on Docker, lane namespaces on Kubernetes.

No Temporal imports: the caller says which lanes are alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import docker

from integrations.docker.runtime import LABEL_ENV
from integrations.haproxy.router import HaproxyRouter
from lanes.target import LABEL_LANE

if TYPE_CHECKING:  # Docker-only installations never load the Kubernetes client
    from lanes.kubernetes_target import KubernetesLaneTarget


class LaneJanitor:
    """Removes lane-labelled containers (and their HAProxy frontends) and lane namespaces of
    dead lanes."""

    def __init__(self, engines: list[str], router: HaproxyRouter,
                 kubernetes: list[KubernetesLaneTarget] | None = None) -> None:
        self.engines = engines
        self.router = router
        self.kubernetes = list(kubernetes or [])

    def lanes_with_resources(self) -> dict[str, list[str]]:
        """Lane name → environment keys of its containers, across every engine."""
        found: dict[str, set[str]] = {}
        for engine in self.engines:
            client = docker.DockerClient(base_url=engine, timeout=60)
            for container in client.containers.list(all=True, filters={"label": LABEL_LANE}):
                found.setdefault(container.labels[LABEL_LANE], set()).add(
                    container.labels.get(LABEL_ENV, ""))
        return {lane: sorted(keys) for lane, keys in found.items()}

    def sweep(self, alive: Callable[[str], bool]) -> dict[str, list[str]]:
        """Remove the resources of every lane for which ``alive`` is False; return them."""
        removed: dict[str, list[str]] = {}
        for lane, env_keys in self.lanes_with_resources().items():
            if alive(lane):
                continue
            for engine in self.engines:
                client = docker.DockerClient(base_url=engine, timeout=60)
                for container in client.containers.list(
                        all=True, filters={"label": f"{LABEL_LANE}={lane}"}):
                    container.remove(force=True)
            for key in env_keys:
                if key:
                    self.router.stop(key)
            removed[lane] = env_keys
        for target in self.kubernetes:
            for lane in target.lane_namespaces():
                if alive(lane):
                    continue
                # Our label is on it (lane_namespaces checked): deleting takes its apps along.
                target.delete_namespace({"namespace": lane, "created": True})
                removed.setdefault(lane, []).append(f"namespace {lane}@{target.cluster}")
        return removed
