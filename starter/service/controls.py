"""Controlling a running release from the CLI: the ReleaseWorkflow Updates and the live watch.

Each control is a Temporal Update on the environment's release workflow. Its validator refuses
what is not allowed (someone who is not an approver, the requester approving their own release,
promote with nothing to promote, …); that refusal comes back as a :class:`CatalogueError` whose
message is the workflow's reason, so the CLI prints it as its one-line error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from catalogue.store import CatalogueError
from schemas.models import ApprovalInput, ControlInput, ReleaseStatus
from starter.service.identity import check_user
from starter.service.releases import release_status
from starter.service.temporal_client import update_refusal
from workflows.release import ReleaseWorkflow, release_workflow_id

# CLI command name → (Update, argument model). The Update methods carry their names.
UPDATES: dict[str, tuple[Any, type[ApprovalInput] | type[ControlInput]]] = {
    "approve": (ReleaseWorkflow.approve, ApprovalInput),
    "reject": (ReleaseWorkflow.reject, ApprovalInput),
    "promote": (ReleaseWorkflow.promote, ControlInput),
    "promote-full": (ReleaseWorkflow.promote_full, ControlInput),
    "pause": (ReleaseWorkflow.pause, ControlInput),
    "resume": (ReleaseWorkflow.resume, ControlInput),
    "abort": (ReleaseWorkflow.abort, ControlInput),
}


def control_input(name: str, user: str, text: str = "") -> ApprovalInput | ControlInput:
    """The Update argument for command ``name``: a comment for approve/reject, else a reason."""
    _, model = UPDATES[name]
    check_user(user, "--as user")
    if model is ApprovalInput:
        return ApprovalInput(user=user, comment=text)
    return ControlInput(user=user, reason=text)


async def send_update(client: Client, app: str, env: str, name: str,
                      arg: ApprovalInput | ControlInput) -> str:
    """Send Update ``name`` to the release running on ``app``/``env``; return its sentence.

    ``env`` is the canonical ``type@cluster``. Raises :class:`CatalogueError` with the
    workflow's reason when the validator refuses, or when no release is running there.
    """
    if name not in UPDATES:
        raise CatalogueError(f"unknown control {name!r}: use one of {', '.join(UPDATES)}")
    update, _ = UPDATES[name]
    handle = client.get_workflow_handle(release_workflow_id(app, env))
    try:
        result: str = await handle.execute_update(update, arg)
        return result
    except WorkflowUpdateFailedError as error:
        raise CatalogueError(f"{name} refused: {update_refusal(error)}") from error
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise CatalogueError(f"{name} failed: {error.message}") from error
        raise CatalogueError(await _not_running(client, app, env, name)) from error


async def watch(client: Client, app: str, env: str,
                on_status: Callable[[str, ReleaseStatus | None], None],
                interval: float = 1.0) -> str:
    """Report (execution status, progress) every ``interval`` seconds until the release ends.

    Returns the final execution status (``completed``, ``failed``, ``canceled``, …).
    """
    while True:
        execution, progress = await release_status(client, app, env)
        on_status(execution, progress)
        if execution != WorkflowExecutionStatus.RUNNING.name.lower():
            return execution
        await asyncio.sleep(interval)


async def _not_running(client: Client, app: str, env: str, name: str) -> str:
    """Why there is nothing to ``name``: no release ever ran, or the latest one has ended."""
    handle = client.get_workflow_handle(release_workflow_id(app, env))
    try:
        description = await handle.describe()
    except RPCError:
        return f"cannot {name}: no release of {app} on {env} has run yet"
    state = (description.status or WorkflowExecutionStatus.COMPLETED).name.lower()
    return (f"cannot {name}: the latest release of {app} on {env} is not running "
            f"(workflow {state}); see `slipway status {app} {env}`")
