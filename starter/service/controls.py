"""Controlling a running release from the CLI: the ReleaseWorkflow Updates and the live watch.

Each control is a Temporal Update on the environment's release workflow. Its validator refuses
what is not allowed (someone who is not an approver, the requester approving their own release,
promote with nothing to promote, …); that refusal comes back as a :class:`CatalogueError` whose
message is the workflow's reason, so the CLI prints it as its one-line error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from catalogue.approvals import record_refusal
from catalogue.store import CatalogueError, Store
from schemas.approvals import DEFAULT_PROOF_SECONDS, Decision, Door, sign_proof
from schemas.models import ApprovalInput, ControlInput, ReleaseStatus
from starter.service.identity import check_user
from starter.service.releases import release_status
from starter.service.temporal_client import refusal_kind, update_refusal
from starter.service.tokens import hash_token
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


def control_input(name: str, user: str, text: str = "",
                  proof: str = "") -> ApprovalInput | ControlInput:
    """The Update argument for command ``name``: a comment (and the signed proof) for
    approve/reject, else a reason."""
    _, model = UPDATES[name]
    check_user(user, "--as user")
    if model is ApprovalInput:
        return ApprovalInput(user=user, comment=text, proof=proof)
    return ControlInput(user=user, reason=text)


def approval_proof(token: str, user: str, app: str, env: str, name: str,
                   via: Door = "cli", seconds: int = DEFAULT_PROOF_SECONDS) -> str:
    """A proof that ``user``, holding API token ``token``, sends ``name`` (approve/reject)
    for the release on ``app``/``env`` (canonical ``type@cluster``). The token stays here:
    only the signature travels."""
    return workflow_proof(token, user, release_workflow_id(app, env), name, via, seconds)


def workflow_proof(token: str, user: str, workflow_id: str, name: str, via: Door = "cli",
                   seconds: int = DEFAULT_PROOF_SECONDS) -> str:
    """A proof that ``user`` (holding ``token``) sends ``name`` to workflow ``workflow_id``
    (a release, or a train)."""
    if not token:
        raise CatalogueError(f"{name} needs your API token: set SLIPWAY_TOKEN (or pass "
                             "--token-file); an admin creates one with `slipway token create "
                             f"{user} --role approve`")
    decision: Decision = "reject" if name == "reject" else "approve"
    return sign_proof(hash_token(token), user, workflow_id, decision, via, time.time(),
                      seconds)



async def send_update(client: Client, app: str, env: str, name: str,
                      arg: ApprovalInput | ControlInput, store: Store | None = None,
                      door: str = "cli") -> str:
    """Send Update ``name`` to the release running on ``app``/``env``; return its sentence.

    ``env`` is the canonical ``type@cluster``. Raises :class:`CatalogueError` with the
    workflow's reason when the validator refuses, or when no release is running there; with
    a ``store``, the refusal is also an audit event (a refused proof already is one, written
    by the worker that checked it).
    """
    if name not in UPDATES:
        raise CatalogueError(f"unknown control {name!r}: use one of {', '.join(UPDATES)}")
    update, _ = UPDATES[name]
    handle = client.get_workflow_handle(release_workflow_id(app, env))
    try:
        result: str = await handle.execute_update(update, arg)
        return result
    except WorkflowUpdateFailedError as error:
        reason = update_refusal(error)
        if store is not None and refusal_kind(error) != "ApprovalRefused":
            record_refusal(store, arg.user, app, env, name, reason, door)
        raise CatalogueError(f"{name} refused: {reason}") from error
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
