"""Swimlanes from the CLI: validate against the catalogue, then talk to SwimlaneWorkflow."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from integrations.store import CatalogueError, Store, find_app
from schemas.lanes import (
    DeleteInput,
    DeleteResult,
    LaneAppsInput,
    LaneSpec,
    LaneStatus,
    RenewInput,
    lane_workflow_id,
    normalise_lane_name,
)
from schemas.settings import Settings
from workflows.swimlane import SwimlaneWorkflow


def lane_name(text: str) -> str:
    try:
        return normalise_lane_name(text)
    except ValueError as error:
        raise CatalogueError(str(error)) from None


def check_apps(store: Store, apps: list[str]) -> list[str]:
    """Every app must be registered; duplicates are dropped, order kept."""
    with store.session() as session:
        for app in apps:
            find_app(session, app)
    return list(dict.fromkeys(apps))


async def create_lane(client: Client, settings: Settings, spec: LaneSpec, asked: str) -> str:
    """Start the lane's workflow; a name already taken (maybe by another spelling) is refused."""
    workflow_id = lane_workflow_id(spec.name)
    try:
        await client.start_workflow(
            SwimlaneWorkflow.run, spec, id=workflow_id, task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"lane {spec.name}: {', '.join(spec.apps)}",
        )
    except WorkflowAlreadyStartedError:
        spelled = f" ({asked!r} normalises to it)" if asked != spec.name else ""
        raise CatalogueError(f"lane {spec.name!r} already exists{spelled}: pick another name, "
                             f"or see `slipway lane show {spec.name}`") from None
    return settings.ui_link(workflow_id)


def _handle(client: Client, name: str) -> WorkflowHandle[SwimlaneWorkflow, LaneStatus]:
    return client.get_workflow_handle_for(SwimlaneWorkflow.run, lane_workflow_id(name))


async def lane_status(client: Client, name: str) -> LaneStatus:
    try:
        return await _handle(client, name).query(SwimlaneWorkflow.status)
    except RPCError as error:
        raise CatalogueError(f"no lane {name!r}: see `slipway lane list`") from error


async def list_lanes(client: Client) -> list[LaneStatus]:
    """Running lanes, found through the Lane search attribute's workflow type."""
    lanes: list[LaneStatus] = []
    async for execution in client.list_workflows(
            "WorkflowType = 'SwimlaneWorkflow' AND ExecutionStatus = 'Running'"):
        try:
            lanes.append(await client.get_workflow_handle(execution.id)
                         .query(SwimlaneWorkflow.status))
        except RPCError:
            continue  # finished between the listing and the query
    return sorted(lanes, key=lambda lane: lane.name)


async def _update(client: Client, name: str, update: object, arg: object) -> object:
    handle = _handle(client, name)
    try:
        return await handle.execute_update(update, arg)  # type: ignore[call-overload]
    except WorkflowUpdateFailedError as error:
        cause = error.cause
        raise CatalogueError(getattr(cause, "message", None) or str(cause or error)) from None
    except RPCError as error:
        raise CatalogueError(f"no running lane {name!r}: see `slipway lane list`") from error


async def renew_lane(client: Client, name: str, user: str) -> LaneStatus:
    return await _update(client, name, SwimlaneWorkflow.renew, RenewInput(user=user))  # type: ignore[return-value]


async def update_lane(client: Client, name: str, add: list[str], remove: list[str],
                      user: str) -> LaneStatus:
    return await _update(client, name, SwimlaneWorkflow.update,  # type: ignore[return-value]
                         LaneAppsInput(add=add, remove=remove, user=user))


async def delete_lane(client: Client, name: str, user: str) -> DeleteResult:
    return await _update(client, name, SwimlaneWorkflow.delete, DeleteInput(user=user))  # type: ignore[return-value]
