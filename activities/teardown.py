"""Activities of an environment's teardown that are neither runtime nor traffic: load what to
tear down, refuse while a release runs, mark the environment removed in the catalogue."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.support import permanent
from catalogue.environments import mark_removed, teardown_plan
from catalogue.hosts import agent_hosts
from catalogue.store import CatalogueError, Store
from schemas.models import release_workflow_id
from schemas.teardown import EnvRemovedInput, ReleaseIdleInput, TeardownPlan, TeardownRequest


class TeardownActivities:
    def __init__(self, store: Store, client: Client, loop: asyncio.AbstractEventLoop,
                 drain_timeout_seconds: float = 30.0, agents_within: float = 120.0) -> None:
        self.store = store
        # Host agents seen within this many seconds take part (catalogue/hosts.py).
        self.agents_within = agents_within
        self.client = client
        # The worker's event loop, where the client lives (these activities run in threads).
        self.loop = loop
        self.drain_timeout_seconds = drain_timeout_seconds

    @activity.defn
    def load_teardown(self, data: TeardownRequest) -> TeardownPlan:
        """The environment as the catalogue has it (unknown app or environment: permanent)."""
        with permanent(CatalogueError):
            plan = teardown_plan(self.store, data.app, data.env, self.drain_timeout_seconds)
            with self.store.session() as session:
                return plan.model_copy(update=agent_hosts(session, plan.cluster,
                                                          self.agents_within))

    async def _running_release(self, data: ReleaseIdleInput) -> str | None:
        handle = self.client.get_workflow_handle(release_workflow_id(data.app, data.env))
        try:
            description = await handle.describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None  # never released
            raise  # an outage says nothing: retried
        if description.status == WorkflowExecutionStatus.RUNNING:
            return description.run_id
        return None

    @activity.defn
    def check_release_idle(self, data: ReleaseIdleInput) -> None:
        """Fail for good when the environment's release workflow runs, naming it."""
        future: Future[str | None] = asyncio.run_coroutine_threadsafe(
            self._running_release(data), self.loop)
        run_id = future.result(timeout=60)
        if run_id is not None:
            workflow_id = release_workflow_id(data.app, data.env)
            raise ApplicationError(
                f"a release of {data.app} on {data.env} is running: workflow {workflow_id} "
                f"(run {run_id}); let it finish or stop it (`slipway abort {data.app} "
                f"{data.env}`), then run `slipway env remove {data.app} {data.env}` again",
                type="ReleaseRunning", non_retryable=True)

    @activity.defn
    def mark_env_removed(self, data: EnvRemovedInput) -> bool:
        """Mark the environment removed and audit it; True when this call marked it."""
        with permanent(CatalogueError):
            return mark_removed(self.store, data)
