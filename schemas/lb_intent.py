"""What an environment's load balancer should be: its frontend (port, health check) and its
backend servers (address, weight, ready or draining), as the router last set them.

Shared by the router that writes it (integrations/haproxy) and the stores that keep it (a
file beside the HAProxy config, or the catalogue): pure shapes, no storage.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class ServerIntent(BaseModel):
    """One server as the router last set it."""

    address: str
    port: int
    weight: int = 100
    state: Literal["ready", "drain"] = "ready"


class FrontendIntent(BaseModel):
    """Where an environment's load balancer listens and what it health-checks (None: no
    checks): what a host that never ran it needs to start it."""

    bind_port: int
    health_path: str | None = "/healthz"
