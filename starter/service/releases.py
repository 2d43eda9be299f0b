"""Starting and following releases from the CLI: validation first, then the workflow."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from catalogue.releases import approval_required, check_releasable
from catalogue.store import CatalogueError, Store, find_app, find_env, latest_baseline
from schemas.models import ReleaseOutcome, ReleaseRequest, ReleaseStatus
from schemas.settings import Settings
from workflows import search
from workflows.release import ReleaseWorkflow, release_workflow_id


class StartedRelease:
    def __init__(self, handle: WorkflowHandle[ReleaseWorkflow, ReleaseOutcome], run_id: str,
                 link: str, summary: str) -> None:
        self.handle = handle
        self.run_id = run_id
        self.link = link
        self.summary = summary


def env_name(store: Store, app: str, env: str) -> str:
    """The canonical ``type@cluster`` of APP's environment ENV (``prod`` → ``prod@local``):
    release workflow ids are built from it. Raises CatalogueError naming what is unknown."""
    with store.session() as session:
        return find_env(session, find_app(session, app), env).name


def validate_release(store: Store, request: ReleaseRequest) -> tuple[ReleaseRequest, str]:
    """Check the request against the catalogue; return it with the canonical env and a summary.

    Everything a person can get wrong is refused here, before anything starts or is written.
    """
    if request.image and request.ref:
        raise CatalogueError("pass either --image (release an existing image) or --ref "
                             "(build from source), not both")
    with store.session() as session:
        app = find_app(session, request.app)
        check_releasable(app)
        env = find_env(session, app, request.env)
        if approval_required(app, env, request) and not app.approvers:
            raise CatalogueError(f"releases of {app.name} on {env.name} need approval, but "
                                 f"{app.name} has no approvers")
        if not request.image and not app.source and request.rollback_to is None:
            raise CatalogueError(f"application {app.name!r} has no build source: pass --image "
                                 "REF, or register it with --source DIR")
        current = latest_baseline(session, env.id or 0)
    version = (current.version if current else 0) + 1
    what = request.image or f"build of {app.source}" + (f" at {request.ref}" if request.ref else "")
    summary = f"{app.name}@{env.name} v{version} → {what}"
    return request.model_copy(update={"env": env.name}), summary


async def start_release(client: Client, settings: Settings, request: ReleaseRequest,
                        summary: str) -> StartedRelease:
    workflow_id = release_workflow_id(request.app, request.env)
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
        )
    except WorkflowAlreadyStartedError as error:
        running = client.get_workflow_handle(workflow_id)
        description = await running.describe()
        raise CatalogueError(
            f"a release of {request.app} on {request.env} is already running: workflow "
            f"{workflow_id} (run {description.run_id}); follow it with `slipway status "
            f"{request.app} {request.env}` or {settings.ui_link(workflow_id, description.run_id)}"
        ) from error
    run_id = handle.result_run_id or ""
    return StartedRelease(handle, run_id, settings.ui_link(workflow_id, run_id), summary)


async def follow(handle: WorkflowHandle[ReleaseWorkflow, ReleaseOutcome],
                 on_status: Callable[[ReleaseStatus], None],
                 poll_seconds: float = 0.5) -> ReleaseOutcome:
    """Wait for the release, reporting its status as it changes; raise CatalogueError on failure."""
    result = asyncio.ensure_future(handle.result())
    try:
        while not result.done():
            with contextlib.suppress(RPCError):  # no worker has picked it up yet
                on_status(await handle.query(ReleaseWorkflow.status))
            await asyncio.wait([result], timeout=poll_seconds)
        return result.result()
    except WorkflowFailureError as error:
        cause = error.cause
        message = getattr(cause, "message", None) or str(cause or error)
        raise CatalogueError(f"release {handle.id} did not succeed: {message}") from error


async def release_status(client: Client, app: str, env: str) -> tuple[str, ReleaseStatus | None]:
    """The latest release workflow of the environment: its execution status and progress."""
    handle = client.get_workflow_handle(release_workflow_id(app, env))
    try:
        description = await handle.describe()
    except RPCError as error:
        raise CatalogueError(f"no release of {app} on {env} has run yet") from error
    status = description.status or WorkflowExecutionStatus.RUNNING
    try:
        progress: ReleaseStatus | None = await handle.query(ReleaseWorkflow.status)
    except RPCError:
        progress = None
    return status.name.lower(), progress
