"""Starting, following and reading releases for the CLI and the receiver: validation first,
then the workflow (started by starter/service/starting.py, re-exported here); status answers
at once even when no worker runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import PendingActivityState, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.service import RPCError, RPCStatusCode

from catalogue.environments import check_active
from catalogue.freezes import verdict_for
from catalogue.holds import check_not_held
from catalogue.rejections import check_request
from catalogue.releases import (
    RecentRollbacks,
    approval_required,
    check_break_glass,
    check_old_rollback,
    check_releasable,
    recent_rollback,
)
from catalogue.store import CatalogueError, Store, find_app, find_env, latest_baseline
from catalogue.tables import utcnow
from schemas.freezes import FreezeVerdict
from schemas.images import check_image_ref
from schemas.models import ReleaseOutcome, ReleaseRequest, ReleaseStatus
from schemas.settings import get_settings
from schemas.sources import check_ref
from starter.service.starting import StartedRelease as StartedRelease
from starter.service.starting import start_release as start_release
from workflows.release import ReleaseWorkflow, release_workflow_id

# `release --wait` names a pending activity once it has run this long (or retried, failed).
ACTIVITY_QUIET_SECONDS = 10.0


def env_name(store: Store, app: str, env: str) -> str:
    """The canonical ``type@cluster`` of APP's environment ENV (``prod`` → ``prod@local``):
    release workflow ids are built from it. Raises CatalogueError naming what is unknown."""
    with store.session() as session:
        return find_env(session, find_app(session, app), env).name


def validate_release(store: Store, request: ReleaseRequest,
                     rollbacks: RecentRollbacks | None = None) -> tuple[ReleaseRequest, str]:
    """Check the request against the catalogue; return it with the canonical env and a summary.

    Everything a person can get wrong is refused here, before anything starts or is written.
    """
    rule = rollbacks or RecentRollbacks.from_settings(get_settings())
    if request.image and request.ref:
        raise CatalogueError("pass either --image (release an existing image) or --ref "
                             "(build from source), not both")
    try:
        if request.ref:
            check_ref(request.ref)
        if request.image:
            check_image_ref(request.image)
    except ValueError as refused:
        raise CatalogueError(str(refused)) from None
    with store.session() as session:
        app = find_app(session, request.app)
        check_releasable(app)
        env = find_env(session, app, request.env)
        check_active(app.name, env)
        recent = recent_rollback(session, env, request, utcnow(), rule)
        if approval_required(app, env, request, recent_rollback=recent) and not app.approvers:
            raise CatalogueError(f"releases of {app.name} on {env.name} need approval, but "
                                 f"{app.name} has no approvers")
        if not request.image and not app.source and request.rollback_to is None:
            raise CatalogueError(f"application {app.name!r} has no build source: pass --image "
                                 "REF, or register it with --source DIR")
        check_break_glass(app, env, request)
        check_old_rollback(app, env, request, recent, rule)
        check_not_held(app, env, request)
        check_request(session, app, env, request)
        current = latest_baseline(session, env.id or 0)
    if request.no_wait and not request.break_glass:
        verdict = check_open(store, env.name)
        if not verdict.open:
            until = (f"; it opens at {verdict.opens_at:%Y-%m-%d %H:%M} UTC" if verdict.opens_at
                     else "; it opens when the freeze is lifted")
            raise CatalogueError(f"{env.name} is closed for releases: {verdict.reason}{until}. "
                                 "Leave out --no-wait to queue the release until then, or "
                                 "--break-glass \"REASON\" with a second approver")
    version = (current.version if current else 0) + 1
    what = request.image or f"build of {app.source}" + (f" at {request.ref}" if request.ref else "")
    summary = f"{app.name}@{env.name} v{version} → {what}"
    return request.model_copy(update={"env": env.name}), summary


def needs_approval(store: Store, request: ReleaseRequest,
                   rollbacks: RecentRollbacks | None = None) -> bool:
    """Whether the release ``request`` asks for will wait for an approver."""
    rule = rollbacks or RecentRollbacks.from_settings(get_settings())
    with store.session() as session:
        app = find_app(session, request.app)
        env = find_env(session, app, request.env)
        recent = recent_rollback(session, env, request, utcnow(), rule)
        return approval_required(app, env, request, recent_rollback=recent)


def rollback_notice(store: Store, request: ReleaseRequest,
                    rollbacks: RecentRollbacks | None = None) -> str:
    """What a rollback goes through, in one line for the person asking for it."""
    rule = rollbacks or RecentRollbacks.from_settings(get_settings())
    with store.session() as session:
        app = find_app(session, request.app)
        env = find_env(session, app, request.env)
        recent = recent_rollback(session, env, request, utcnow(), rule)
        needs_approval = approval_required(app, env, request, recent_rollback=recent)
    approvers = ", ".join(app.approvers) or "none"
    if request.rollback_to is None:
        return (f"rollback --image releases {request.image} like any release: "
                + (f"it waits for an approver ({approvers}), " if needs_approval
                   else f"it needs no approver ({env.name}'s approval policy: "
                        f"{env.approval}), ")
                + "is judged by the canary analysis and waits out freezes. The emergency "
                  "path is a rollback to a recent baseline: `slipway rollback "
                  f"{app.name} {env.name} --to N`")
    if recent:
        return (f"v{request.rollback_to} is a recent baseline ({rule.describe()}): an "
                "emergency rollback, freezes do not hold it"
                + (f"; {env.name}'s policy asks for an approver ({approvers})"
                   if needs_approval else ""))
    return (f"v{request.rollback_to} is not a recent baseline ({rule.describe()}): the "
            f"rollback waits for an approver other than you ({approvers})")


def check_open(store: Store, env: str) -> FreezeVerdict:
    """May ``env`` (type@cluster) be released into now?"""
    env_type, _, cluster = env.partition("@")
    return verdict_for(store, env_type, cluster)


async def follow(handle: WorkflowHandle[ReleaseWorkflow, ReleaseOutcome],
                 on_status: Callable[[ReleaseStatus], None],
                 poll_seconds: float = 0.5,
                 on_activity: Callable[[PendingActivity], None] | None = None,
                 quiet_seconds: float = ACTIVITY_QUIET_SECONDS,
                 early: bool = False) -> ReleaseOutcome:
    """Wait for the release, reporting its status as it changes; raise CatalogueError on failure.

    With ``on_activity``, each poll also describes the workflow (one describe) and reports a
    pending activity whenever what it says changes (its heartbeat detail, attempt or last
    failure), once it is retried, has failed, or has been pending ``quiet_seconds``: a step
    that goes well stays quiet, one that hangs says why.

    With ``early``, return as soon as the outcome is decided (:func:`outcome_of`): a fast
    rollback's once the old version serves all traffic, while the workflow goes on removing
    the version rolled back (``outcome.after`` names that work).
    """
    result = asyncio.ensure_future(outcome_of(handle) if early else handle.result())
    said: dict[str, tuple[str, int, str]] = {}
    seen: dict[str, float] = {}
    try:
        while not result.done():
            with contextlib.suppress(RPCError):  # no worker has picked it up yet
                on_status(await handle.query(ReleaseWorkflow.status))
            if on_activity is not None:
                with contextlib.suppress(RPCError):
                    pending, _more = await pending_activities(
                        await handle.describe(rpc_timeout=QUERY_TIMEOUT))
                    for item in _changed(pending, said, seen, quiet_seconds):
                        on_activity(item)
            await asyncio.wait([result], timeout=poll_seconds)
        outcome = result.result()
        if early and outcome.after:  # the events up to the outcome, work after it named
            with contextlib.suppress(RPCError):
                on_status(await handle.query(ReleaseWorkflow.status, rpc_timeout=QUERY_TIMEOUT))
        return outcome
    except WorkflowFailureError as error:
        cause = error.cause
        message = getattr(cause, "message", None) or str(cause or error)
        raise CatalogueError(f"release {handle.id} did not succeed: {message}") from error


async def outcome_of(handle: WorkflowHandle[ReleaseWorkflow, ReleaseOutcome],
                     ) -> ReleaseOutcome:
    """The release's outcome as soon as the workflow decides it (its ``outcome`` Update);
    its result when it has none to give early (it failed, was rolled back or continued in a
    new run) or can no longer answer (the run has ended)."""
    try:
        decided = await handle.execute_update(ReleaseWorkflow.outcome)
    except (WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError):
        decided = None
    return decided if decided is not None else await handle.result()


def _changed(pending: list[PendingActivity], said: dict[str, tuple[str, int, str]],
             seen: dict[str, float], quiet_seconds: float) -> list[PendingActivity]:
    """The activities worth a line now: what they say differs from what was last said, they
    have something to say, and they are retried, failed or pending ``quiet_seconds`` since
    first seen (``said`` and ``seen`` are updated)."""
    changed = []
    now = time.monotonic()
    for item in pending:
        first = seen.setdefault(item.activity_id, now)
        troubled = item.attempt > 1 or bool(item.last_failure) or now - first >= quiet_seconds
        state = (item.detail, item.attempt, item.last_failure)
        if not troubled or said.get(item.activity_id) == state:
            continue
        if item.detail or item.last_failure:
            changed.append(item)
        said[item.activity_id] = state
    return changed



# A worker answers a query in milliseconds; without one the server would hold it ~30 s.
QUERY_TIMEOUT = timedelta(seconds=2)


class PendingActivity(BaseModel):
    """An activity the server has scheduled or started and not yet seen finish, with what its
    latest heartbeat said (e.g. ``0/1 replicas of v2 healthy; replica 0 restarting``)."""

    name: str
    state: str
    attempt: int
    last_failure: str = ""
    activity_id: str = ""
    detail: str = ""
    last_heartbeat: datetime | None = None


class ServerView(BaseModel):
    """What the Temporal server knows of a release: its task queue, whether a worker polls
    it, and the release's pending activities (shown whether or not a worker answered)."""

    task_queue: str
    workers_polling: bool
    pending: list[PendingActivity] = []
    more_pending: int = 0  # pending activities beyond those listed


# Bounds of what status shows of pending activities: how many, and how much of each detail.
PENDING_SHOWN = 3
DETAIL_CHARS = 200


# A live worker long-polls (up to a minute per poll), so the server's last sighting of it is
# at most that old; a worker seen longer ago than this has gone.
POLLER_SEEN_WITHIN = timedelta(seconds=75)


async def _pollers(client: Client, task_queue: str) -> bool:
    """True when a worker has polled the task queue for workflow tasks lately."""
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(namespace=client.namespace,
                                 task_queue=TaskQueue(name=task_queue),
                                 task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        timeout=QUERY_TIMEOUT)
    now = datetime.now(UTC)
    return any(now - poller.last_access_time.ToDatetime(tzinfo=UTC)
               < POLLER_SEEN_WITHIN for poller in response.pollers)


async def pending_activities(description: WorkflowExecutionDescription,
                             ) -> tuple[list[PendingActivity], int]:
    """The first :data:`PENDING_SHOWN` pending activities of a described workflow, each with
    its latest heartbeat detail (decoded with the client's data converter, cut to
    :data:`DETAIL_CHARS`), and how many more there are."""
    raw = list(description.raw_description.pending_activities)
    shown = []
    for item in raw[:PENDING_SHOWN]:
        shown.append(PendingActivity(
            name=item.activity_type.name,
            state=PendingActivityState.Name(item.state).removeprefix("PENDING_ACTIVITY_STATE_")
            .lower(),
            attempt=item.attempt,
            last_failure=_cut(item.last_failure.message) if item.HasField("last_failure")
            else "",
            activity_id=item.activity_id,
            detail=await _heartbeat_detail(description, item.heartbeat_details.payloads)
            if item.HasField("heartbeat_details") else "",
            last_heartbeat=item.last_heartbeat_time.ToDatetime(tzinfo=UTC)
            if item.HasField("last_heartbeat_time") else None))
    return shown, len(raw) - len(shown)


async def _heartbeat_detail(description: WorkflowExecutionDescription,
                            payloads: Sequence[Payload]) -> str:
    """The progress message of an activity's latest heartbeat: activities heartbeat
    ``{"message": …, "checkpoint": …}`` (activities/support.py Pulse); anything else is shown
    as it decodes. The checkpoint is left out."""
    if not payloads:
        return ""
    try:
        values = await description.data_converter.decode(payloads[:1])
    except Exception:  # noqa: BLE001 - a codec this client lacks must not break status
        return "(heartbeat details not readable here)"
    value = values[0] if values else None
    if isinstance(value, dict):
        value = value.get("message", "")
    return _cut("" if value is None else str(value))


def _cut(text: str) -> str:
    """One line of at most :data:`DETAIL_CHARS` characters."""
    line = " ".join(text.split())
    return line if len(line) <= DETAIL_CHARS else line[:DETAIL_CHARS - 1] + "…"


async def release_report(client: Client, app: str, env: str,
                         ) -> tuple[str, ReleaseStatus | None, ServerView]:
    """The latest release of the environment: execution status, the workflow's own progress
    (None when no worker answered), and what the server knows (task queue, pollers, and the
    pending activities with their latest heartbeat detail), from one describe.

    Answers within a few seconds whether or not a worker runs: the query is only sent when
    a worker polls the task queue, and then with a short timeout.
    """
    handle = client.get_workflow_handle(release_workflow_id(app, env))
    try:
        description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise CatalogueError(f"no release of {app} on {env} has run yet") from error
        raise CatalogueError(f"Temporal did not describe {handle.id}: {error.message}") from error
    status = (description.status or WorkflowExecutionStatus.RUNNING).name.lower()
    task_queue = description.task_queue
    pending, more = await pending_activities(description)
    try:
        polling = await _pollers(client, task_queue)
    except RPCError:
        polling = True  # cannot tell: let the query decide
    server = ServerView(task_queue=task_queue, workers_polling=polling, pending=pending,
                        more_pending=more)
    progress: ReleaseStatus | None = None
    if polling:
        with contextlib.suppress(RPCError):
            progress = await handle.query(ReleaseWorkflow.status, rpc_timeout=QUERY_TIMEOUT)
    return status, progress, server


async def release_status(client: Client, app: str, env: str) -> tuple[str, ReleaseStatus | None]:
    """The latest release workflow of the environment: its execution status and progress
    (None when no worker answered)."""
    status, progress, _server = await release_report(client, app, env)
    return status, progress
