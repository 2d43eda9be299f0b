"""Swimlanes from the CLI and the receiver: validate against the catalogue, then talk to
SwimlaneWorkflow."""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from catalogue.store import CatalogueError, Store, find_app
from catalogue.tables import Application, Baseline, Build, Environment, LaneRecord
from lanes.resources import LaneSettings, repository_path
from schemas.lanes import (
    DeleteInput,
    DeleteResult,
    LaneAppsInput,
    LanePushInput,
    LanePushResult,
    LaneSpec,
    LaneStatus,
    RenewInput,
    lane_workflow_id,
    normalise_lane_name,
)
from schemas.settings import Settings
from schemas.sources import SourceRefused, check_ref
from starter.service.temporal_client import update_refusal
from workflows.swimlane import SwimlaneWorkflow

LANE_BRANCH_PREFIX = "feature/"  # a push here deploys into the lane (SwimlaneWorkflow.push)


class LaneMissingError(CatalogueError):
    """No (running) lane of that name: the receiver answers 404, not 409."""


def lane_name(text: str) -> str:
    try:
        return normalise_lane_name(text)
    except ValueError as error:
        raise CatalogueError(str(error)) from None


def check_apps(store: Store, apps: list[str]) -> list[str]:
    """Every app must be registered and have something a lane can run (a baseline, or at
    least a build); duplicates are dropped, order kept. Refusing here beats a lane that
    fails half-way through its create."""
    with store.session() as session:
        for app in apps:
            found = find_app(session, app)
            envs = session.exec(select(Environment).where(Environment.app_id == found.id)).all()
            if not envs:
                raise CatalogueError(f"{app} has no environment a lane could copy: add its QA "
                                     f"one with `slipway env add {app} test`")
            ran = session.exec(select(Baseline).where(
                col(Baseline.env_id).in_([env.id for env in envs]))).first()
            built = session.exec(select(Build).where(Build.app_id == found.id)).first()
            if ran is None and built is None:
                raise CatalogueError(f"{app} has never been released or built, so a lane has "
                                     f"nothing to run: release it to test first")
    return list(dict.fromkeys(apps))


async def create_lane(client: Client, settings: Settings, spec: LaneSpec, asked: str) -> str:
    """Start the lane's workflow; a name already taken (maybe by another spelling) is refused."""
    workflow_id = lane_workflow_id(spec.name)
    receiver = LaneSettings().receiver_url.rstrip("/")
    if receiver and not spec.renew_url:
        spec = spec.model_copy(update={"renew_url": f"{receiver}/api/lanes/{spec.name}/renew"})
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
        raise LaneMissingError(f"no lane {name!r}: see `slipway lane list`") from error


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
        raise CatalogueError(update_refusal(error)) from None
    except RPCError as error:
        raise LaneMissingError(f"no running lane {name!r}: see `slipway lane list`") from error


async def renew_lane(client: Client, name: str, user: str) -> LaneStatus:
    return await _update(client, name, SwimlaneWorkflow.renew, RenewInput(user=user))  # type: ignore[return-value]


async def update_lane(client: Client, name: str, add: list[str], remove: list[str],
                      user: str) -> LaneStatus:
    return await _update(client, name, SwimlaneWorkflow.update,  # type: ignore[return-value]
                         LaneAppsInput(add=add, remove=remove, user=user))


def lane_deploy_input(store: Store, lane: str, app: str, ref: str | None,
                      user: str) -> LanePushInput:
    """What ``slipway lane deploy`` sends: the app's source at ``ref`` — by default the lane's
    branch for a git URL, the working tree as it is for a local directory."""
    with store.session() as session:
        source = find_app(session, app).source
    if not source:
        raise CatalogueError(f"{app} was registered without --source: there is nothing to "
                             "build for the lane")
    if ref is None:
        ref = f"{LANE_BRANCH_PREFIX}{lane}" if repository_path(source)[0] else ""
    elif ref:
        try:
            check_ref(ref)
        except SourceRefused as refused:
            raise CatalogueError(str(refused)) from None
    return LanePushInput(app=app, source=source, sha=ref, user=user)


async def deploy_to_lane(client: Client, name: str, data: LanePushInput) -> LanePushResult:
    return await _update(client, name, SwimlaneWorkflow.push, data)  # type: ignore[return-value]


async def delete_lane(client: Client, name: str, user: str) -> DeleteResult:
    return await _update(client, name, SwimlaneWorkflow.delete, DeleteInput(user=user))  # type: ignore[return-value]


def apps_of_project(store: Store, project: str) -> list[tuple[str, str]]:
    """(app, source) of every registered app whose repository is the project ``group/app``."""
    with store.session() as session:
        apps = session.exec(select(Application)).all()
    return [(app.name, app.source) for app in apps
            if app.source and repository_path(app.source)[1] == project]


async def push_to_lane(client: Client, store: Store, project: str, branch: str, sha: str,
                       user: str, event_id: str) -> list[dict[str, Any]]:
    """Hand a push to ``feature/<lane>`` to the lane's workflow, once per app of the project.

    Returns once each lane has accepted (or refused) the push: the build and the deploy run
    in the workflow, visible in its history. Temporal being unreachable raises RPCError.
    """
    lane = lane_name(branch.removeprefix(LANE_BRANCH_PREFIX))
    apps = apps_of_project(store, project)
    if not apps:
        return [{"lane": lane, "refused": f"no registered app has its source in {project}: "
                 "register it with that repository as --source"}]
    results: list[dict[str, Any]] = []
    for app, source in apps:
        try:
            # The update id makes a repeated delivery of this push a no-op in the workflow.
            update = await _handle(client, lane).start_update(
                SwimlaneWorkflow.push,
                LanePushInput(app=app, source=source, sha=sha, user=user, event_id=event_id),
                id=f"push:{app}:{sha}", wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        except WorkflowUpdateFailedError as error:
            results.append({"lane": lane, "app": app, "refused": update_refusal(error)})
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            results.append({"lane": lane, "app": app,
                             "refused": f"no running lane {lane!r}: create it with "
                                        f"`slipway lane create {lane} --apps {app}`"})
        else:
            results.append({"lane": lane, "app": app, "update_id": update.id,
                            "workflow_id": lane_workflow_id(lane)})
    return results


def lane_records(store: Store, name: str | None = None) -> list[LaneRecord]:
    """The catalogue's lane rows (all, or the one named), newest change first: what is known
    of lanes whose workflows have ended and left Temporal's retention."""
    with store.session() as session:
        query = select(LaneRecord)
        if name is not None:
            query = query.where(LaneRecord.name == name)
        rows = session.exec(query).all()
    return sorted(rows, key=lambda row: row.updated_at, reverse=True)
