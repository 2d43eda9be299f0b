"""``slipway server``: run Slipway's HTTP API, the one front door, with uvicorn."""

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
