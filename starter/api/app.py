"""Slipway's HTTP API (``slipway server``), the one front door: the ``slipway`` client's
commands, approvals, webhooks and read-only views.

* ``POST /api/commands`` — every command of the client, run as the bearer token's user
  (starter/api/commands.py); ``GET /api/whoami``.

Every ``/api`` route takes a bearer token (``slipway token create``) whose roles allow it:
``read`` for the GET views, ``release`` to renew lanes, ``approve`` to approve or reject,
``lane-admin`` to delete a lane one does not own. Refusals are audit events.

* ``POST /api/releases/{app}/{env}/approve|reject`` — bearer token → user; the receiver signs
  an approval proof with the token's hash and the approval signing secret, bound to the run
  waiting for approval and what it carries; the worker verifies and spends it, the
  workflow's rules decide (403 with the reason when they refuse).
* ``POST /hooks/gitlab`` — push and tag push events; rules in ``SLIPWAY_HOOK_RULES`` record a
  code change per matching rule (ref = the tag, or the pushed commit for a branch), submit it
  and release it through the same validation as ``slipway release --change``. A ref already
  carried by a change of that environment is not released again, nor one into an
  environment that needs approval when ``SLIPWAY_IDENTITIES`` maps the pusher to no Slipway
  user (nothing is recorded; the answer says what to add), nor one into an environment
  holding automatic releases since a manual rollback, nor a ref built before into a rejected
  image (docs/governance.md; the answer names the fix). A push to
  ``feature/<lane>`` is handed to that lane's workflow, which builds the commit, deploys it
  into the lane and counts it as use (renews the lane). A lane's own hook
  (``/hooks/gitlab?lane=<name>``) acts on pushes to its branch only.
* ``POST /hooks/registry`` — docker distribution notifications and Harbor webhooks, recorded
  as audit events.
* ``POST /api/releases/{app}/{env}/approval-token`` — a signed approval token for the Web UI's
  approve/reject signal (``approve`` role), bound to the run waiting for approval.
* ``GET /api/releases/{app}/{env}``, ``GET /api/baselines/{app}/{env}``.
* ``GET /api/lanes[/{name}]``, ``POST /api/lanes/{name}/renew``, ``DELETE /api/lanes/{name}``
  (starter/api/lanes.py; renew and delete as the bearer token's user).

Redelivered webhooks (same event id) are no-ops. Neither tokens nor webhook secrets are
logged: log lines name the event and its outcome only.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, delete, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from catalogue.store import CatalogueError, Store, audit, find_app, find_env
from catalogue.tables import Application, Baseline, Change
from catalogue.tokens import HookDelivery
from schemas.approvals import SIGNAL_TOKEN_SECONDS, Decision
from schemas.enums import ChangeKind, ChangeState
from schemas.models import ApprovalInput, ReleaseRequest
from schemas.settings import Settings, get_settings
from schemas.sources import SourceRefused
from starter.api.approval_links import redact_access_logs
from starter.api.approval_links import router as approval_links_router
from starter.api.command_process import warm_up
from starter.api.commands import router as commands_router
from starter.api.deps import Approver, ClientDep, Reader, StoreDep, refuse
from starter.api.freezes import router as freezes_router
from starter.api.hooks import (
    GitEvent,
    WebhookShapeError,
    parse_gitlab,
    parse_registry,
    payload_id,
    requests_for,
    secret_matches,
    unmapped_pusher,
    unmapped_refusal,
)
from starter.api.insights import router as insights_router
from starter.api.lanes import router as lanes_router
from starter.api.metrics import router as metrics_router
from starter.api.settings import ReceiverSettings
from starter.service import releases
from starter.service.changes import change_release_request, create_change, submit_change
from starter.service.controls import send_update, sign_approval
from starter.service.lanes import LANE_BRANCH_PREFIX, push_to_lane
from starter.service.releases import release_status, start_release, validate_release
from starter.service.temporal_client import update_refusal
from starter.service.tokens import Caller
from workflows.release import release_workflow_id

log = logging.getLogger("slipway.receiver")


class ApprovalBody(BaseModel):
    """Body of approve / reject: an optional comment for the release's history."""

    comment: str = ""




def request_settings(api: FastAPI) -> Settings:
    """The receiver's settings (those it was created with)."""
    settings: Settings = api.state.settings
    return settings


def canonical_env(store: Store, app: str, env: str) -> str:
    """``type@cluster`` of the environment; 404 with the catalogue's message when unknown."""
    try:
        return releases.env_name(store, app, env)
    except CatalogueError as error:
        raise HTTPException(404, str(error)) from error


def claim_delivery(store: Store, source: str, event_id: str, kind: str) -> bool:
    """Record a delivery; False when it was seen before (the unique key refuses it)."""
    with store.session() as session:
        session.add(HookDelivery(source=source, event_id=event_id, kind=kind))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            return False
    return True


def forget_delivery(store: Store, source: str, event_id: str) -> None:
    """Undo a claim when handling failed transiently, so the sender's retry is handled."""
    with store.session() as session:
        session.exec(delete(HookDelivery).where(  # type: ignore[call-overload]
            col(HookDelivery.source) == source, col(HookDelivery.event_id) == event_id))
        session.commit()


async def json_body(request: Request) -> tuple[bytes, dict[str, Any]]:
    body = await request.body()
    try:
        payload = json.loads(body)
    except ValueError as error:
        raise HTTPException(422, "body is not JSON") from error
    if not isinstance(payload, dict):
        raise HTTPException(422, "body must be a JSON object")
    return body, payload


# ------------------------------------------------------------------ the application


def create_app(settings: Settings | None = None,
               receiver_settings: ReceiverSettings | None = None,
               store: Store | None = None) -> FastAPI:
    """The receiver; every argument defaults to what the environment variables say."""
    settings = settings or get_settings()
    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        # The command processes take the catalogue as the server leaves it: current.
        await run_in_threadpool(api.state.store.migrate)
        await run_in_threadpool(warm_up)
        yield

    api = FastAPI(title="Slipway server", lifespan=lifespan, version="0.1.0",
                  description="Slipway's front door: commands, approvals, webhooks and "
                              "release views.")
    api.state.settings = settings
    api.state.receiver_settings = receiver_settings or ReceiverSettings()
    api.state.store = store or Store(settings.resolved_database_url())
    api.state.client = None
    api.include_router(commands_router)
    api.include_router(lanes_router)
    api.include_router(freezes_router)
    api.include_router(approval_links_router)
    api.include_router(insights_router)
    api.include_router(metrics_router)
    redact_access_logs()

    async def decide(app: str, env: str, approve: bool, body: ApprovalBody | None,
                     caller: Caller, store: Store, client: Client) -> dict[str, str]:
        env_name = await run_in_threadpool(canonical_env, store, app, env)
        name: Decision = "approve" if approve else "reject"
        # The bearer token authenticated the caller: sign the proof with its hash and the
        # signing secret, for the run waiting now (the same check the worker makes for the
        # CLI). The proof, neither the token nor the secret, goes to Temporal.
        settings = request_settings(api)
        try:
            signed = await sign_approval(client, settings.approval_signing_secret(),
                                         caller.hash, caller.user,
                                         release_workflow_id(app, env_name), name,
                                         via="receiver")
        except CatalogueError as error:
            raise HTTPException(503, str(error)) from error
        data = ApprovalInput(user=caller.user, comment=body.comment if body else "",
                             proof=signed.proof)
        try:
            answer = await send_update(client, app, env_name, name, data, store, "receiver",
                                       run_id=signed.run_id)
        except CatalogueError as error:
            cause = error.__cause__
            if isinstance(cause, WorkflowUpdateFailedError):
                raise HTTPException(403, update_refusal(cause)) from error
            if isinstance(cause, RPCError) and cause.status != RPCStatusCode.NOT_FOUND:
                raise HTTPException(503, f"Temporal refused the update: {cause.message}") \
                    from error
            raise HTTPException(409, f"no release of {app} on {env_name} is running") \
                from error
        log.info("%s %s %s@%s", caller.user, "approved" if approve else "rejected", app,
                 env_name)
        return {"result": str(answer), "user": caller.user}

    @api.post("/api/releases/{app}/{env}/approve", tags=["releases"])
    async def approve(app: str, env: str, caller: Approver, store: StoreDep, client: ClientDep,
                      body: ApprovalBody | None = None) -> dict[str, str]:
        """Approve the running release as the token's user (the workflow checks who); the
        token needs the ``approve`` role."""
        return await decide(app, env, True, body, caller, store, client)

    @api.post("/api/releases/{app}/{env}/reject", tags=["releases"])
    async def reject(app: str, env: str, caller: Approver, store: StoreDep, client: ClientDep,
                     body: ApprovalBody | None = None) -> dict[str, str]:
        """Reject the running release as the token's user (``approve`` role)."""
        return await decide(app, env, False, body, caller, store, client)

    @api.post("/api/releases/{app}/{env}/approval-token", tags=["releases"])
    async def approval_token(app: str, env: str, caller: Approver, store: StoreDep,
                             client: ClientDep,
                             decision: Decision = "approve") -> dict[str, Any]:
        """A signed approval token for the caller (``approve`` role), single use, valid 30
        minutes and bound to the run waiting for approval, with the signal to send it in from
        the Temporal Web UI (More Actions → Send a Signal) or ``temporal workflow signal``.
        The API token itself never leaves here."""
        env_name = await run_in_threadpool(canonical_env, store, app, env)
        workflow_id = release_workflow_id(app, env_name)
        try:
            signed = await sign_approval(client, request_settings(api).approval_signing_secret(),
                                         caller.hash, caller.user, workflow_id, decision,
                                         via="signal", seconds=SIGNAL_TOKEN_SECONDS)
        except CatalogueError as error:
            raise HTTPException(503, str(error)) from error
        if signed.subject is None:
            raise HTTPException(409, f"the release of {app} on {env_name} is not waiting for "
                                     "approval")
        return {"workflow_id": workflow_id, "run_id": signed.run_id, "signal": decision,
                "approves": signed.subject.describe(),
                "input": {"user": caller.user, "comment": "", "token": signed.proof}}

    @api.get("/api/releases/{app}/{env}", tags=["releases"])
    async def release(app: str, env: str, _caller: Reader, store: StoreDep,
                      client: ClientDep) -> dict[str, Any]:
        """The latest release of the environment: execution status and progress (``read``)."""
        env_name = await run_in_threadpool(canonical_env, store, app, env)
        try:
            status, progress = await release_status(client, app, env_name)
        except CatalogueError as error:
            raise HTTPException(404, str(error)) from error
        return {"workflow_id": release_workflow_id(app, env_name), "status": status,
                "progress": progress.model_dump(mode="json") if progress else None}

    @api.get("/api/baselines/{app}/{env}", tags=["releases"])
    def baselines(app: str, env: str, _caller: Reader,
                  store: StoreDep) -> list[dict[str, Any]]:
        """Every baseline of the environment, newest first (``read``)."""
        try:
            with store.session() as session:
                environment = find_env(session, find_app(session, app), env)
                rows = session.exec(select(Baseline).where(Baseline.env_id == environment.id)
                                    .order_by(col(Baseline.version).desc())).all()
        except CatalogueError as error:
            raise HTTPException(404, str(error)) from error
        return [row.model_dump(mode="json") for row in rows]

    @api.post("/hooks/gitlab", tags=["hooks"])
    async def gitlab_hook(request: Request, store: StoreDep, client: ClientDep) -> dict[str, Any]:
        """GitLab push / tag push: start the releases the hook rules ask for."""
        config: ReceiverSettings = request.app.state.receiver_settings
        secret = settings.credential(config.gitlab_hook_credential)
        if not secret_matches(request.headers.get("X-Gitlab-Token"), secret):
            raise await run_in_threadpool(refuse, store, request, 401,
                                          "wrong or missing X-Gitlab-Token")
        body, payload = await json_body(request)
        kind = request.headers.get("X-Gitlab-Event", "")
        event_id = request.headers.get("X-Gitlab-Event-UUID") or payload_id(body)
        try:
            event = parse_gitlab(kind, payload)
        except (SourceRefused, WebhookShapeError) as refused:
            raise HTTPException(422, str(refused)) from None
        if event is None:
            return {"status": "ignored", "event": kind}
        # A lane's own hook (``?lane=<name>``, set up by the lane) deploys into that lane only;
        # the release rules belong to the project's release hook.
        only_lane = request.query_params.get("lane")
        wanted = [] if only_lane else requests_for(event, config.hook_rules,
                                                      request.app.state.settings.identities)
        to_lane = event.kind == "branch" and event.name.startswith(LANE_BRANCH_PREFIX) and (
            not only_lane or event.name == f"{LANE_BRANCH_PREFIX}{only_lane}")
        if not wanted and not to_lane:
            return {"status": "no matching rule", "project": event.project, "ref": event.name}
        if not await run_in_threadpool(claim_delivery, store, "gitlab", event_id, kind):
            log.info("gitlab event %s redelivered: ignored", event_id)
            return {"status": "duplicate", "event_id": event_id}
        started: list[dict[str, str]] = []
        unmapped = unmapped_pusher(event, request.app.state.settings.identities)
        try:
            for wanted_request in wanted:
                try:
                    checked, summary = await run_in_threadpool(
                        change_for_push, store, wanted_request, event, unmapped)
                    run = await start_release(client, settings, checked, summary)
                except CatalogueError as error:
                    # Refused for good (unknown app, release running…): say so, don't retry.
                    started.append({"app": wanted_request.app, "env": wanted_request.env,
                                    "refused": str(error)})
                    continue
                assert checked.change_id is not None  # change_for_push always records one
                await run_in_threadpool(mark_releasing, store, checked.change_id,
                                        checked.requested_by)
                started.append({"app": checked.app, "env": checked.env,
                                "change_id": str(checked.change_id),
                                "workflow_id": run.handle.id, "run_id": run.run_id})
            lanes = await push_to_lane(client, store, event.project, event.name, event.sha,
                                       event.user, event_id) if to_lane else []
        except CatalogueError as error:  # a branch name that is no lane name
            lanes = [{"refused": str(error)}]
        except RPCError as error:
            await run_in_threadpool(forget_delivery, store, "gitlab", event_id)
            raise HTTPException(503, f"Temporal unavailable: {error.message}") from error
        await run_in_threadpool(_audit_hook, store, "hook.gitlab", event.user,
                                {"event_id": event_id, "project": event.project,
                                 "ref": event.name, "sha": event.sha, "releases": started,
                                 "lanes": lanes})
        log.info("gitlab event %s on %s %s: %d release(s), %d lane deploy(s)", event_id,
                 event.project, event.name, len(started),
                 sum(1 for lane in lanes if "update_id" in lane))
        return {"status": "handled", "event_id": event_id, "releases": started, "lanes": lanes}

    @api.post("/hooks/registry", tags=["hooks"])
    async def registry_hook(request: Request, store: StoreDep) -> dict[str, Any]:
        """A pushed image (distribution envelope or Harbor webhook): record it for the audit."""
        config: ReceiverSettings = request.app.state.receiver_settings
        secret = settings.credential(config.registry_hook_credential)
        header = request.headers.get("Authorization", "")
        if not (secret_matches(header, secret)
                or secret_matches(header.removeprefix("Bearer "), secret)):
            raise await run_in_threadpool(refuse, store, request, 401,
                                          "wrong or missing Authorization header")
        body, payload = await json_body(request)
        recorded, duplicates = 0, 0
        try:
            pushes = parse_registry(body, payload)
        except WebhookShapeError as refused:
            raise HTTPException(422, f"not a registry push notification: {refused}") from None
        for push in pushes:
            if not await run_in_threadpool(claim_delivery, store, "registry", push.event_id,
                                           push.source):
                duplicates += 1
                continue
            await run_in_threadpool(_record_push, store, push.repository, push.tag,
                                    push.digest, push.source, push.actor, push.event_id)
            recorded += 1
        return {"recorded": recorded, "duplicates": duplicates}

    return api


def change_for_push(store: Store, wanted: ReleaseRequest, event: GitEvent,
                    unmapped: str = "") -> tuple[ReleaseRequest, str]:
    """The validated release of the change that carries a pushed tag or branch commit.

    The change (kind code, ref = ``wanted.ref``) is created and submitted, or reused when a
    change of the environment with that ref is still ready to release (its release failed to
    start before). A ref whose change is releasing or was released is refused: a change is
    released at most once, and the same commit is not released twice by a push. A pusher
    ``SLIPWAY_IDENTITIES`` does not map (``unmapped``) is refused where approval is needed.
    """
    checked, _ = validate_release(store, wanted)  # refuse before recording anything
    if unmapped and releases.needs_approval(store, checked):
        raise CatalogueError(unmapped_refusal(unmapped, event, checked))
    actor = wanted.requested_by
    with store.session() as session:
        application = find_app(session, checked.app)
        environment = find_env(session, application, checked.env)
        existing = session.exec(select(Change).where(
            Change.app_id == application.id, Change.env_id == environment.id,
            Change.kind == ChangeKind.CODE, Change.ref == (checked.ref or ""),
            col(Change.state) != ChangeState.CLOSED).order_by(col(Change.id).desc())).first()
    if existing is not None and existing.state != ChangeState.READY_TO_RELEASE:
        raise CatalogueError(f"{event.kind} {event.name} ({checked.ref}) is already carried by "
                             f"change {existing.id} ({existing.state}) of {checked.app} "
                             f"{checked.env}: a change is released at most once")
    if existing is not None:
        change_id = existing.id or 0
    else:
        if event.kind == "tag":
            note = f"tag {event.name} pushed by {event.user}"
        else:
            note = f"branch {event.name} at {event.sha[:12]} pushed by {event.user}"
        created = create_change(store, checked.app, checked.env, kind=ChangeKind.CODE,
                                ref=checked.ref, note=note, actor=actor)
        change_id = created.change.id or 0
        submit_change(store, change_id, actor)
    request = change_release_request(store, change_id, actor).model_copy(
        update={"version_label": wanted.version_label, "trigger": wanted.trigger})
    return validate_release(store, request)


def mark_releasing(store: Store, change_id: int, actor: str) -> None:
    """ready_to_release → releasing once its release started (the workflow may be first)."""
    with store.session() as session:
        change = session.get(Change, change_id)
        if change is None or change.state != ChangeState.READY_TO_RELEASE:
            return
        change.state = ChangeState.RELEASING
        session.add(change)
        owner = session.get(Application, change.app_id)
        audit(session, "change.releasing", actor=actor, app=owner.name if owner else "",
              change_id=change_id)
        session.commit()


def _audit_hook(store: Store, action: str, actor: str, detail: dict[str, Any]) -> None:
    with store.session() as session:
        audit(session, action, actor=actor, **detail)
        session.commit()


def _record_push(store: Store, repository: str, tag: str, digest: str, source: str,
                 actor: str, event_id: str) -> None:
    """Audit event ``registry.push``, attributed to the application named like the
    repository's last component when there is one."""
    name = repository.rsplit("/", 1)[-1]
    with store.session() as session:
        known = session.exec(select(Application).where(Application.name == name)).first()
        audit(session, "registry.push", actor=actor, app=name if known else "",
              repository=repository, tag=tag, digest=digest, source=source, event_id=event_id)
        session.commit()
