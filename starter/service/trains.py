"""Release trains for the CLI: build a train from command-line words, start it, steer it with
one approval, follow it, and roll a train back as one."""

from __future__ import annotations

from pydantic import ValidationError
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from catalogue.releases import RecentRollbacks
from catalogue.store import CatalogueError, Store
from catalogue.trains import check_train, rollback_request
from schemas.models import ApprovalInput
from schemas.settings import Settings, get_settings
from schemas.trains import TrainMember, TrainOutcome, TrainRequest, TrainStatus, chained
from starter.service.temporal_client import update_refusal
from starter.service.validation import refusal
from workflows.train import TrainWorkflow, train_workflow_id


def _pairs(items: list[str], what: str, sep: str) -> dict[str, str]:
    found = {}
    for item in items:
        key, mark, value = item.partition(sep)
        if not mark or not key or not value:
            raise CatalogueError(f"{what} {item!r}: write it as APP{sep}VALUE")
        found[key] = value
    return found


def train_request(store: Store, name: str, apps: list[str], order: str, after: list[str],
                  images: list[str], requested_by: str) -> TrainRequest:
    """A checked train: ``apps`` as APP@ENV, ``order`` "a,b,c" (one after the other) or
    ``after`` ["b:a"] (b after a); without either, all go out in parallel."""
    members = []
    for item in apps:
        app, mark, env = item.partition("@")
        if not mark or not app or not env:
            raise CatalogueError(f"--app {item!r}: write it as APP@ENV, e.g. shop@prod")
        members.append((app, env))
    chosen = [app for app, _ in members]
    if order and after:
        raise CatalogueError("give --order or --after, not both")
    depends: dict[str, list[str]] = {app: [] for app in chosen}
    if order:
        sequence = [app.strip() for app in order.split(",") if app.strip()]
        if sorted(sequence) != sorted(chosen):
            raise CatalogueError(f"--order {order!r} must name every app of the train once "
                                 f"({', '.join(chosen)})")
        depends = chained(sequence)
    for later, earlier in _pairs(after, "--after", ":").items():
        depends.setdefault(later, []).extend(earlier.split(","))
    image_of = _pairs(images, "--image", "=")
    unknown = sorted(set(image_of) - set(chosen))
    if unknown:
        raise CatalogueError(f"--image for {', '.join(unknown)}, which the train does not carry")
    try:
        request = TrainRequest(name=name, requested_by=requested_by, members=[
            TrainMember(app=app, env=env, image=image_of.get(app), after=depends.get(app, []))
            for app, env in members])
    except ValidationError as error:
        raise refusal(error) from None
    members_checked = check_train(store, request)[0]
    # Children are ordinary releases: give them their canonical environments.
    return request.model_copy(update={"members": [
        member.model_copy(update={"env": checked.env})
        for member, checked in zip(request.members, members_checked, strict=True)]})


def train_rollback(store: Store, name: str, requested_by: str) -> TrainRequest:
    request = rollback_request(store, name, requested_by)
    check_train(store, request, RecentRollbacks.from_settings(get_settings()))
    return request


async def start_train(client: Client, settings: Settings,
                      request: TrainRequest) -> WorkflowHandle[TrainWorkflow, TrainOutcome]:
    workflow_id = train_workflow_id(request.name)
    apps = ", ".join(f"{m.app}@{m.env}" for m in request.members)
    try:
        return await client.start_workflow(
            TrainWorkflow.run, request, id=workflow_id, task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=(f"rollback of train {request.name}: {apps}" if request.rollback_of
                            else f"train {request.name}: {apps}"))
    except WorkflowAlreadyStartedError as error:
        raise CatalogueError(f"train {request.name} is already running: `slipway train status "
                             f"{request.name}`") from error


async def train_status(client: Client, name: str) -> TrainStatus:
    handle = client.get_workflow_handle(train_workflow_id(name))
    try:
        status: TrainStatus = await handle.query(TrainWorkflow.status)
        return status
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CatalogueError(f"no train called {name!r} has run: `slipway train list`") \
                from error
        raise CatalogueError(f"cannot read train {name}: {error.message}") from error


async def decide(client: Client, name: str, approve: bool, data: ApprovalInput,
                 run_id: str = "") -> str:
    """Send the train's approve/reject Update, to run ``run_id`` (the one its proof is bound
    to) when given."""
    handle = client.get_workflow_handle(train_workflow_id(name), run_id=run_id or None)
    update = TrainWorkflow.approve if approve else TrainWorkflow.reject
    try:
        answer: str = await handle.execute_update(update, data)
        return answer
    except WorkflowUpdateFailedError as error:
        raise CatalogueError(f"{'approve' if approve else 'reject'} refused: "
                             f"{update_refusal(error)}") from error
    except RPCError as error:
        raise CatalogueError(f"no train {name} is running ({error.message})") from error
