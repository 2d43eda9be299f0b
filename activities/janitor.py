"""Activities of the janitor: sweep lane resources whose lane has no running workflow, and
report catalogue rows of lanes whose workflow is gone."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from catalogue.lanes import mark_lost
from catalogue.store import Store
from lanes.janitor import LaneJanitor, Liveness
from schemas.lanes import lane_workflow_id


class JanitorActivities:
    def __init__(self, janitor: LaneJanitor, store: Store, client: Client,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.janitor = janitor
        self.store = store
        self.client = client
        self.loop = loop

    async def _describe(self, lane: str) -> Liveness:
        try:
            description = await self.client.get_workflow_handle(lane_workflow_id(lane)).describe()
        except RPCError as error:
            # Only the server saying "no such workflow" means gone; an outage means nothing.
            return Liveness.GONE if error.status == RPCStatusCode.NOT_FOUND else Liveness.UNKNOWN
        running = description.status == WorkflowExecutionStatus.RUNNING
        return Liveness.ALIVE if running else Liveness.GONE

    def _liveness(self, lane: str) -> Liveness:
        # This activity runs in a worker thread; the client lives on the worker's event loop.
        future: Future[Liveness] = asyncio.run_coroutine_threadsafe(self._describe(lane),
                                                                     self.loop)
        try:
            return future.result(timeout=60)
        except TimeoutError:
            return Liveness.UNKNOWN

    @activity.defn
    def sweep_lane_orphans(self) -> dict[str, list[str]]:
        """Remove containers and frontends of lanes whose workflow is gone (seen on two sweeps,
        older than the lane TTL); say which."""
        return self.janitor.sweep(self._liveness)

    @activity.defn
    def report_lost_lanes(self) -> list[str]:
        """Lanes the catalogue still lists whose workflow is gone: marked lost, named here."""
        return mark_lost(self.store, lambda lane: self._liveness(lane) != Liveness.GONE)
