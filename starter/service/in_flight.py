"""What would be interrupted by stopping the stack: releases and lanes whose workflows run."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.service import RPCError

from catalogue.store import CatalogueError
from schemas.settings import Settings
from starter.service.temporal_client import connect

# Workflow ids of the things a person cares about; the janitor's runs are not "in flight".
IN_FLIGHT_PREFIXES = ("release:", "swimlane:", "teardown:")
CONNECT_TIMEOUT_SECONDS = 5.0


async def running_workflows(client: Client) -> list[str]:
    """Ids of running release, lane and environment-teardown workflows, sorted."""
    found: list[str] = []
    async for execution in client.list_workflows("ExecutionStatus='Running'"):
        if execution.id.startswith(IN_FLIGHT_PREFIXES):
            found.append(execution.id)
    return sorted(found)


async def in_flight(settings: Settings) -> list[str]:
    """Running releases and lanes; [] when Temporal is not reachable (nothing to interrupt)."""
    try:
        client = await asyncio.wait_for(connect(settings), CONNECT_TIMEOUT_SECONDS)
        return await asyncio.wait_for(running_workflows(client), CONNECT_TIMEOUT_SECONDS)
    except (CatalogueError, RPCError, TimeoutError):
        return []
