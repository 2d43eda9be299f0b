"""Histories the integration tests recorded, written out for the replay gate.

When ``REPLAY_GATE_HISTORIES`` names a directory (``scripts/test.sh`` sets it for the
integration run), the dev-server fixture writes there, as it shuts down, the history of
every Slipway workflow the tests ran on it; ``python -m tests.histories.gate DIR`` then
replays them all on this commit's code. Tests whose workflows run on other code (the
upgrade drill's build B) use a server of their own, so nothing of theirs lands here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from temporalio.client import Client
from temporalio.service import RPCError

from workflows.versioning import BEHAVIOURS

ENV = "REPLAY_GATE_HISTORIES"
# Bounded: an export must never hold the suite up (the gate then replays what was written).
EXPORT_SECONDS = 180
MAX_HISTORIES = 2000


def export_directory() -> Path | None:
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


async def _export(client: Client, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    types = " OR ".join(f'WorkflowType="{name}"' for name in sorted(BEHAVIOURS))
    written = 0
    async for execution in client.list_workflows(types, limit=MAX_HISTORIES):
        history = await client.get_workflow_handle(
            execution.id, run_id=execution.run_id).fetch_history()
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", execution.id)[:120]
        (directory / f"{name}--{execution.run_id}.json").write_text(history.to_json())
        written += 1
    return written


async def export_histories(client: Client, directory: Path) -> int:
    """Write every Slipway workflow's history on ``client``'s namespace into ``directory``;
    the number written (what was written before a timeout stays)."""
    try:
        return await asyncio.wait_for(_export(client, directory), EXPORT_SECONDS)
    except (TimeoutError, RPCError) as error:  # the gate replays what was written
        logging.getLogger("slipway.tests").warning(
            "history export for the replay gate stopped: %s", error or "timed out")
        return len(list(directory.glob("*.json")))
