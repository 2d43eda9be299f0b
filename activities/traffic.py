"""Activities that steer traffic through the environment's load balancer (HAProxy)."""

from __future__ import annotations

import time

from temporalio import activity

from activities.support import progress
from integrations.haproxy import HaproxyRouter
from schemas.models import DrainInput, EnsureFrontendInput, TrafficInput


def version_prefix(version: int) -> str:
    """Load-balancer server names of a version start with this (``v3-0``, ``v3-1``…)."""
    return f"v{version}-"


def replica_index(server_name: str) -> int:
    return int(server_name.rsplit("-", 1)[1])


class TrafficActivities:
    def __init__(self, router: HaproxyRouter) -> None:
        self.router = router

    @activity.defn
    def ensure_frontend(self, data: EnsureFrontendInput) -> None:
        """Make sure the environment's load balancer listens on its port (idempotent)."""
        self.router.ensure_frontend(data.env_key, data.lb_port)

    @activity.defn
    def add_to_lb(self, data: TrafficInput) -> None:
        """Put instances in rotation at full weight (idempotent)."""
        for instance in data.instances:
            self.router.add_server(data.env_key, instance.name, instance.address, instance.port)

    @activity.defn
    def drain(self, data: DrainInput) -> None:
        """Stop new requests to a version's replicas from index ``keep`` on, let in-flight
        requests finish (bounded by the drain timeout), then take those replicas out."""
        names = [s.name for s in self.router.servers(data.env_key)
                 if s.name.startswith(version_prefix(data.version))
                 and replica_index(s.name) >= data.keep]
        for name in names:
            self.router.drain(data.env_key, name)
        deadline = time.monotonic() + data.timeout_seconds
        for name in names:
            # The drain timeout is shared: a stuck request must not hold the release forever.
            remaining = max(0.0, deadline - time.monotonic())
            self.router.wait_idle(data.env_key, name, timeout=remaining)
            progress(f"drained {name}")
        for name in names:
            self.router.remove_server(data.env_key, name)

    @activity.defn
    def remove_from_lb(self, data: DrainInput) -> None:
        """Take a version's servers out of rotation at once (used when undoing a release)."""
        for server in self.router.servers(data.env_key):
            if server.name.startswith(version_prefix(data.version)):
                self.router.remove_server(data.env_key, server.name)
