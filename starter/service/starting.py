"""Starting a release workflow: one per environment (workflow id ``release:<app>:<env>``,
conflict policy FAIL), refused while the environment is torn down, and waiting out the
previous release's clean-up (a fast rollback removing the version it replaced) instead of
refusing, so the new release never races it."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from catalogue.store import CatalogueError
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from schemas.teardown import teardown_workflow_id
from workflows import search
from workflows.release import ReleaseWorkflow, release_workflow_id

# A release that finds the environment's previous one removing the version it replaced (stage
# cleaning_up: its outcome is reported, workflows/outcome.py) waits this long for it to end
# rather than refusing; the clean-up takes seconds.
CLEAN_UP_WAIT_SECONDS = 30.0


class StartedRelease:
    def __init__(self, handle: WorkflowHandle[ReleaseWorkflow, ReleaseOutcome], run_id: str,
                 link: str, summary: str) -> None:
        self.handle = handle
        self.run_id = run_id
        self.link = link
        self.summary = summary


def approval_help(app: str, env: str) -> str:
    """The Web UI's static details of a release: how an approver approves from there."""
    template = '{"user": "YOUR_NAME", "comment": "why", "token": "TOKEN"}'
    return (
        "**Approving from this page** (when the release waits for approval): More Actions → "
        "Send a Signal, signal name `approve` (or `reject`), input:\n\n"
        f"```json\n{template}\n```\n\n"
        f"TOKEN: `slipway approve {app} {env} --as YOUR_NAME --print-token` (with your API "
        f"token in SLIPWAY_TOKEN), or `POST /api/releases/{app}/{env}/approval-token` on the "
        "receiver; single use, valid 30 minutes. A refused signal is shown in the current "
        "details and in `slipway status`."
    )


async def start_release(client: Client, settings: Settings, request: ReleaseRequest,
                        summary: str,
                        clean_up_wait: float = CLEAN_UP_WAIT_SECONDS) -> StartedRelease:
    """Start the release workflow. One release runs per environment: a running one refuses
    this, unless it is only removing what it replaced (a fast rollback's clean-up, stage
    ``cleaning_up``): then this waits up to ``clean_up_wait`` seconds for it and starts, so
    the new release never races the removal."""
    workflow_id = release_workflow_id(request.app, request.env)
    await refuse_while_torn_down(client, request.app, request.env)
    waited = False
    while True:
        try:
            handle = await client.start_workflow(
                ReleaseWorkflow.run, request, id=workflow_id, task_queue=settings.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(search.APP, request.app),
                    SearchAttributePair(search.ENV, request.env),
                    SearchAttributePair(search.STAGE, "queued"),
                ]),
                static_summary=summary,
                static_details=approval_help(request.app, request.env),
            )
            break
        except WorkflowAlreadyStartedError as error:
            running = client.get_workflow_handle(workflow_id)
            description = await running.describe()
            cleaning = (description.typed_search_attributes.get(search.STAGE)
                        == "cleaning_up")
            if cleaning and not waited and await _ended_within(running, clean_up_wait):
                waited = True
                continue
            doing = (" (its outcome is decided; it is still removing the version it "
                     "replaced)" if cleaning else "")
            raise CatalogueError(
                f"a release of {request.app} on {request.env} is already running{doing}: "
                f"workflow {workflow_id} (run {description.run_id}); follow it with `slipway "
                f"status {request.app} {request.env}` or "
                f"{settings.ui_link(workflow_id, description.run_id)}"
            ) from error
    run_id = handle.result_run_id or ""
    return StartedRelease(handle, run_id, settings.ui_link(workflow_id, run_id), summary)


async def _ended_within(handle: WorkflowHandle[Any, Any], seconds: float) -> bool:
    """Whether the workflow of ``handle`` ends (however) within ``seconds``."""
    try:
        await asyncio.wait_for(handle.result(), timeout=seconds)
    except TimeoutError:
        return False
    except (WorkflowFailureError, RPCError):
        pass  # it ended all the same, or can no longer be read: try to start
    return True


async def refuse_while_torn_down(client: Client, app: str, env: str) -> None:
    """Refuse a release into an environment whose teardown runs (the teardown refuses a
    running release the same way: workflows/teardown.py)."""
    workflow_id = teardown_workflow_id(app, env)
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return
        raise CatalogueError(f"Temporal did not describe {workflow_id}: {error.message}") \
            from error
    if description.status == WorkflowExecutionStatus.RUNNING:
        raise CatalogueError(
            f"{app} {env} is being removed: workflow {workflow_id} (run "
            f"{description.run_id}) tears it down; nothing is released into it again")
