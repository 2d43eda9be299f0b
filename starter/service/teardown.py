"""Removing environments (``slipway env remove``, ``app retire`` reaching offline): checks
first, then EnvTeardownWorkflow. Nothing is written or started on a refusal."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from catalogue.environments import is_removed, removal_event
from catalogue.store import CatalogueError, Store, find_app, find_env
from catalogue.tables import Environment
from schemas.enums import AppState
from schemas.models import release_workflow_id
from schemas.settings import Settings
from schemas.teardown import TeardownOutcome, TeardownRequest, teardown_workflow_id
from workflows import search
from workflows.teardown import EnvTeardownWorkflow


@dataclass(frozen=True)
class EnvToRemove:
    """An environment a teardown may start for (canonical names), or one already removed."""

    app: str
    env: str
    removed: str = ""  # "" while it exists; else when and by whom it was removed


@dataclass(frozen=True)
class StartedTeardown:
    handle: WorkflowHandle[EnvTeardownWorkflow, TeardownOutcome]
    link: str


def env_to_remove(store: Store, app: str, env: str) -> EnvToRemove:
    """The environment named (CatalogueError when the app or the environment is unknown)."""
    with store.session() as session:
        owner = find_app(session, app)
        found = find_env(session, owner, env)
        if not is_removed(found):
            return EnvToRemove(owner.name, found.name)
        event = removal_event(session, owner.name, found.name)
        when = (f"on {event.at:%Y-%m-%d %H:%M} UTC by {event.actor or '?'}" if event
                else "earlier")
        return EnvToRemove(owner.name, found.name, removed=when)


def envs_going_offline(store: Store, app: str) -> list[str]:
    """Environments the next ``app retire`` step tears down: all that are left when it takes
    the application offline, none when it only makes it retiring."""
    with store.session() as session:
        owner = find_app(session, app)
        if owner.state not in (AppState.RETIRING, AppState.PENDING_REVIEW):
            return []
        envs = session.exec(select(Environment).where(Environment.app_id == owner.id)
                            .order_by(col(Environment.env_type), col(Environment.cluster)))
        return [env.name for env in envs if not is_removed(env)]


async def running_release(client: Client, app: str, env: str) -> str | None:
    """The run id of the environment's running release, or None."""
    workflow_id = release_workflow_id(app, env)
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise CatalogueError(f"Temporal did not describe {workflow_id}: {error.message}") \
            from error
    return description.run_id if description.status == WorkflowExecutionStatus.RUNNING else None


async def refuse_running_releases(client: Client, settings: Settings, app: str,
                                  envs: list[str]) -> None:
    """CatalogueError naming the first running release among ``envs`` of ``app``."""
    for env in envs:
        run_id = await running_release(client, app, env)
        if run_id is not None:
            workflow_id = release_workflow_id(app, env)
            raise CatalogueError(
                f"a release of {app} on {env} is running: workflow {workflow_id} (run "
                f"{run_id}, {settings.ui_link(workflow_id, run_id)}); let it finish or stop "
                f"it (`slipway abort {app} {env}`), then try again")


async def start_teardown(client: Client, settings: Settings,
                         request: TeardownRequest) -> StartedTeardown:
    """Start (or join, when one already runs) the environment's teardown."""
    workflow_id = teardown_workflow_id(request.app, request.env)
    handle = await client.start_workflow(
        EnvTeardownWorkflow.run, request, id=workflow_id, task_queue=settings.task_queue,
        # A teardown already running is the one asked for: follow it instead of a second.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([
            SearchAttributePair(search.APP, request.app),
            SearchAttributePair(search.ENV, request.env),
            SearchAttributePair(search.STAGE, "queued"),
        ]),
        static_summary=f"remove {request.app}@{request.env} ({request.reason or 'env remove'})",
    )
    return StartedTeardown(handle, settings.ui_link(workflow_id, handle.result_run_id or ""))


async def remove_env(client: Client, settings: Settings, env: EnvToRemove, actor: str,
                     reason: str) -> StartedTeardown:
    """Refuse while the environment's release runs; otherwise start its teardown."""
    await refuse_running_releases(client, settings, env.app, [env.env])
    return await start_teardown(client, settings, TeardownRequest(
        app=env.app, env=env.env, requested_by=actor, reason=reason))


async def outcome(started: StartedTeardown) -> TeardownOutcome:
    """Wait for the teardown; CatalogueError with the workflow's reason when it fails."""
    try:
        return await started.handle.result()
    except WorkflowFailureError as error:
        cause: BaseException | None = error.cause
        while getattr(cause, "cause", None) is not None:
            cause = getattr(cause, "cause", None)
        message = getattr(cause, "message", None) or str(cause or error)
        raise CatalogueError(f"removing {started.handle.id} did not finish: {message}; "
                             "running the same command again continues where it stopped") \
            from error
