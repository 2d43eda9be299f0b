"""Activities of the janitor: sweep lane resources whose lane has no running workflow, and
report catalogue rows of lanes whose workflow is gone."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from catalogue.lanes import mark_lost
from catalogue.store import Store
from lanes.janitor import LaneJanitor
from schemas.lanes import lane_workflow_id


class JanitorActivities:
    def __init__(self, janitor: LaneJanitor, store: Store, client: Client,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.janitor = janitor
        self.store = store
        self.client = client
        self.loop = loop

    async def _running(self, lane: str) -> bool:
        try:
            description = await self.client.get_workflow_handle(lane_workflow_id(lane)).describe()
        except RPCError:
            return False  # no workflow at all: the lane's resources are orphans
        return description.status == WorkflowExecutionStatus.RUNNING

    def _alive(self, lane: str) -> bool:
        # This activity runs in a worker thread; the client lives on the worker's event loop.
        future: Future[bool] = asyncio.run_coroutine_threadsafe(self._running(lane), self.loop)
        return future.result(timeout=60)

    @activity.defn
    def sweep_lane_orphans(self) -> dict[str, list[str]]:
        """Remove containers and frontends of lanes with no running workflow; say which."""
        return self.janitor.sweep(self._alive)

    @activity.defn
    def report_lost_lanes(self) -> list[str]:
        """Lanes the catalogue still lists whose workflow is gone: marked lost, named here."""
        return mark_lost(self.store, self._alive)
