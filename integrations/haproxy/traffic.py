"""``TrafficRouter`` for Docker clusters: the environment's HAProxy, server by server."""

from __future__ import annotations

import time

from integrations.haproxy.router import HaproxyRouter
from integrations.protocols import Progress
from schemas.models import DrainInput, EnsureFrontendInput, TrafficInput


def version_prefix(version: int) -> str:
    """Load-balancer server names of a version start with this (``v3-0``, ``v3-1``…)."""
    return f"v{version}-"


def replica_index(server_name: str) -> int:
    return int(server_name.rsplit("-", 1)[1])


class HaproxyTraffic:
    """Steers traffic by adding, draining and deleting HAProxy servers (no reloads)."""

    def __init__(self, router: HaproxyRouter) -> None:
        self.router = router

    def ensure_frontend(self, data: EnsureFrontendInput) -> None:
        self.router.ensure_frontend(data.env_key, data.lb_port, data.health_path)

    def add(self, data: TrafficInput) -> None:
        for instance in data.instances:
            self.router.add_server(data.env_key, instance.name, instance.address, instance.port)

    def _servers(self, data: DrainInput) -> list[str]:
        if self.router.frontend_port(data.env_key) is None:
            return []  # no frontend (never made, or removed with its environment): no servers
        return [s.name for s in self.router.servers(data.env_key)
                if s.name.startswith(version_prefix(data.version))
                and replica_index(s.name) >= data.keep]

    def drain(self, data: DrainInput, progress: Progress | None = None) -> None:
        """No new requests to the servers from index ``keep`` on; in-flight ones finish
        (bounded by the drain timeout); then the servers are taken out."""
        names = self._servers(data)
        for name in names:
            self.router.drain(data.env_key, name)
        deadline = time.monotonic() + data.timeout_seconds
        for name in names:
            # The drain timeout is shared: a stuck request must not hold the release forever.
            self.router.wait_idle(data.env_key, name, timeout=max(0.0, deadline - time.monotonic()))
            if progress:
                progress(f"drained {name}")
        for name in names:
            self.router.remove_server(data.env_key, name)

    def remove(self, data: DrainInput) -> None:
        for name in self._servers(data):
            self.router.remove_server(data.env_key, name)

    def remove_frontend(self, data: EnsureFrontendInput) -> None:
        """Stop the environment's HAProxy and remove its files: the port is free, nothing
        (the worker's reconciler included) starts it again. Already gone is fine."""
        self.router.stop(data.env_key)
