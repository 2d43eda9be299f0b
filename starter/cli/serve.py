"""``slipway serve``: run the HTTP receiver (approvals, webhooks, release views) with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Run the receiver: approvals, GitLab and registry webhooks, release views (/docs)."""
    # Imported here so every other command starts without loading the web stack.
    import uvicorn

    from starter.api.app import create_app

    # Access logs show paths only; tokens and hook secrets travel in headers, never logged.
    uvicorn.run(create_app(), host=host, port=port, log_level="info")
