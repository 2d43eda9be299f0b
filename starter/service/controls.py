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
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from catalogue.approvals import record_refusal
from catalogue.store import CatalogueError, Store
from schemas.approvals import (
    DEFAULT_PROOF_SECONDS,
    ApprovalSubject,
    Decision,
    Door,
    sign_proof,
)
from schemas.models import ApprovalInput, ControlInput, ReleaseStatus
from starter.service.identity import check_user
from starter.service.releases import ServerView, release_report
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


@dataclass(frozen=True)
class SignedApproval:
    """A proof and the run it is bound to; both empty when nothing waits for approval (the
    Update is then refused by the workflow with its reason)."""

    proof: str = ""
    run_id: str = ""
    subject: ApprovalSubject | None = None


def need_token(token: str, user: str, name: str) -> str:
    """``token``, or CatalogueError saying how to get one."""
    if not token:
        raise CatalogueError(f"{name} needs your API token (`slipway login`); an admin "
                             f"creates one with `slipway token create {user} --role approve`")
    return token


async def approval_subject(client: Client, workflow_id: str, status_query: Any,
                           run_id: str = "") -> ApprovalSubject | None:
    """What the workflow (run ``run_id``, default: the latest) asks approval for, from its
    ``status`` query; None when it waits for none, has ended, or no worker answers."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id or None)
    try:
        status = await handle.query(status_query)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError):
        return None
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return None
        raise CatalogueError(f"cannot read {workflow_id}: {error.message}") from error
    if getattr(status, "awaiting", "") != "approval":
        return None
    subject: ApprovalSubject | None = getattr(status, "approval", None)
    return subject


async def sign_approval(client: Client, secret: str, token_hash: str, user: str,
                        workflow_id: str, name: str, status_query: Any = None,
                        via: Door = "cli", seconds: int = DEFAULT_PROOF_SECONDS,
                        run_id: str = "") -> SignedApproval:
    """A proof that ``user`` (whose API token hashes to ``token_hash``) sends ``name``
    (approve/reject) to what workflow ``workflow_id`` (a release, or a train with its
    ``status_query``) waits for now: bound to that run and its content, signed with the
    deployment's approval signing ``secret``. Only the signature travels, never the token
    or the secret."""
    subject = await approval_subject(client, workflow_id,
                                     status_query or ReleaseWorkflow.status, run_id)
    if subject is None:
        return SignedApproval()
    decision: Decision = "reject" if name == "reject" else "approve"
    proof = sign_proof(secret, token_hash, user, subject, decision, via, time.time(), seconds)
    return SignedApproval(proof=proof, run_id=subject.run_id, subject=subject)


async def approval_proof(client: Client, secret: str, token: str, user: str, app: str,
                         env: str, name: str, via: Door = "cli",
                         seconds: int = DEFAULT_PROOF_SECONDS) -> SignedApproval:
    """A proof that ``user``, holding API token ``token``, sends ``name`` for the release
    waiting on ``app``/``env`` (canonical ``type@cluster``). The token stays here."""
    return await sign_approval(client, secret, hash_token(need_token(token, user, name)), user,
                               release_workflow_id(app, env), name, via=via, seconds=seconds)



async def send_update(client: Client, app: str, env: str, name: str,
                      arg: ApprovalInput | ControlInput, store: Store | None = None,
                      door: str = "cli", run_id: str = "") -> str:
    """Send Update ``name`` to the release running on ``app``/``env``; return its sentence.

    ``env`` is the canonical ``type@cluster``; ``run_id`` pins the run (an approval goes to
    the run its proof is bound to, never to a later one). Raises :class:`CatalogueError`
    with the workflow's reason when the validator refuses, or when no release is running
    there; with a ``store``, the refusal is also an audit event (a refused proof already is
    one, written by the worker that checked it).
    """
    if name not in UPDATES:
        raise CatalogueError(f"unknown control {name!r}: use one of {', '.join(UPDATES)}")
    update, _ = UPDATES[name]
    handle = client.get_workflow_handle(release_workflow_id(app, env), run_id=run_id or None)
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
        raise CatalogueError(await _not_running(client, app, env, name, run_id)) from error


async def watch(client: Client, app: str, env: str,
                on_status: Callable[[str, ReleaseStatus | None, ServerView | None], None],
                interval: float = 1.0) -> str:
    """Report (execution status, progress, what the server knows: pending activities and
    their heartbeat detail) every ``interval`` seconds until the release ends; one describe
    per refresh.

    Returns the final execution status (``completed``, ``failed``, ``canceled``, …).
    """
    while True:
        execution, progress, server = await release_report(client, app, env)
        on_status(execution, progress, server)
        if execution != WorkflowExecutionStatus.RUNNING.name.lower():
            return execution
        await asyncio.sleep(interval)


async def _not_running(client: Client, app: str, env: str, name: str, run_id: str = "") -> str:
    """Why there is nothing to ``name``: no release ever ran, or the latest one (the run
    ``run_id``, when given) has ended."""
    handle = client.get_workflow_handle(release_workflow_id(app, env), run_id=run_id or None)
    try:
        description = await handle.describe()
    except RPCError:
        return f"cannot {name}: no release of {app} on {env} has run yet"
    state = (description.status or WorkflowExecutionStatus.COMPLETED).name.lower()
    if run_id:
        return (f"cannot {name}: the release of {app} on {env} it was meant for (run "
                f"{run_id[:8]}…) is not running (workflow {state}); an approval counts only "
                "for the release it was given to")
    return (f"cannot {name}: the latest release of {app} on {env} is not running "
            f"(workflow {state}); see `slipway status {app} {env}`")
