"""``slipway server`` (Slipway's HTTP API, the one front door, with uvicorn) and ``slipway
agent`` (a Docker host's agent): the long-running processes of a fleet, run where they serve."""

from __future__ import annotations

from typing import Annotated

import typer


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        help="Port to listen on (default: SLIPWAY_SERVER_PORT, 8470).",
        show_default=False)] = None,
) -> None:
    """Run Slipway's HTTP API: every command of the `slipway` client, approvals, webhooks
    and release views (/docs). It holds the catalogue, Temporal and the signing keys; its
    clients hold only their tokens."""
    # Imported here so every other command starts without loading the web stack.
    import uvicorn

    from schemas.settings import get_settings

    # By name: the API sits above the commands it runs (starter.api.command_process).
    # Access logs show paths only; tokens and hook secrets travel in headers, never logged.
    uvicorn.run("starter.api.app:create_app", factory=True, host=host,
                port=port or get_settings().server_port, log_level="info")


def agent(
    host: Annotated[str, typer.Option(
        help="The Docker host this agent serves: a host name of a Docker cluster in "
             "SLIPWAY_CLUSTERS (default: SLIPWAY_AGENT_HOST, else the default cluster's "
             "first host).", show_default=False)] = "",
) -> None:
    """Run a Docker host's agent until stopped: it polls that host's task queue and runs
    its containers, health probes and (on the load-balancer host) HAProxy. One per host;
    `slipway up` runs the local engine's."""
    import os
    import sys

    from starter.stack.processes import AGENT_SCRIPT

    # Replaces this process: signals and the exit code are the agent's own.
    os.execv(sys.executable, [sys.executable, str(AGENT_SCRIPT),
                              *(["--host", host] if host else [])])
