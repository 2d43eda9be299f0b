"""``TrafficRouter`` for Docker clusters: the environment's HAProxy, a change's servers at
once."""

from __future__ import annotations

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
        """Every instance in rotation: one admin connection for the lot."""
        self.router.add_servers(data.env_key, {instance.name: (instance.address, instance.port)
                                               for instance in data.instances})

    def _servers(self, data: DrainInput) -> list[str]:
        if self.router.frontend_port(data.env_key) is None:
            return []  # no frontend (never made, or removed with its environment): no servers
        return [name for name in self.router.server_names(data.env_key)
                if name.startswith(version_prefix(data.version))
                and replica_index(name) >= data.keep]

    def drain(self, data: DrainInput, progress: Progress | None = None) -> None:
        """No new requests to the servers from index ``keep`` on; in-flight ones finish
        (bounded by the drain timeout); then the servers are taken out. Each phase is one
        admin connection (the wait, one per look), not one per server."""
        names = self._servers(data)
        if not names:
            return
        self.router.drain_servers(data.env_key, names)

        def drained(name: str) -> None:
            if progress:
                progress(f"drained {name}")

        # The drain timeout is shared: a stuck request must not hold the release forever.
        for name in self.router.wait_idle_servers(data.env_key, names,
                                                  timeout=data.timeout_seconds, idle=drained):
            drained(name)  # out of time: taken out all the same
        self.router.remove_servers(data.env_key, names)

    def remove(self, data: DrainInput) -> None:
        self.router.remove_servers(data.env_key, self._servers(data))

    def remove_frontend(self, data: EnsureFrontendInput) -> None:
        """Stop the environment's HAProxy and remove its files: the port is free, nothing
        (the worker's reconciler included) starts it again. Already gone is fine."""
        self.router.stop(data.env_key)
