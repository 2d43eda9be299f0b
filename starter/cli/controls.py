"""``slipway approve | reject | promote | promote-full | pause | resume | abort | rollback``.

The first seven send an Update to the release running on APP ENV and print the workflow's
answer; a refusal (not an approver, four eyes, wrong stage) is the one-line error. ``rollback``
starts a new release whose target is an older baseline.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from catalogue.store import CatalogueError
from schemas.approvals import DEFAULT_PROOF_SECONDS, SIGNAL_TOKEN_SECONDS
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, console, open_store, read_token
from starter.cli.release import AllowRejected, run_release
from starter.service import changes, releases, tokens
from starter.service.controls import (
    SignedApproval,
    approval_proof,
    control_input,
    need_token,
    send_update,
)
from starter.service.identity import acting_user, current_user, impersonated
from starter.service.temporal_client import connect
from workflows.release import release_workflow_id

AppArg = Annotated[str, typer.Argument(metavar="APP", help="Application.", show_default=False)]
EnvArg = Annotated[str, typer.Argument(metavar="ENV", show_default=False,
                                       help="Environment: type@cluster, or type alone.")]
AsUser = Annotated[str | None, typer.Option(
    "--as", metavar="USER", show_default=False,
    help="Act as USER instead of yourself (the user of your token): admin role only, and "
         "audited as yours.")]


PrintToken = Annotated[bool, typer.Option(
    "--print-token", help="Send nothing: print a signed approval token (single use, valid 30 "
                          "min) and the signal to send with it from the Temporal Web UI.")]


def _print_signal_token(name: str, app: str, env_name: str, who: str, text: str,
                        signed: SignedApproval) -> None:
    if signed.subject is None:
        raise CatalogueError(f"nothing to {name}: the release of {app} on {env_name} is not "
                             f"waiting for approval (`slipway status {app} {env_name}`)")
    console.print(f"signal [bold]{name}[/] to workflow {release_workflow_id(app, env_name)} "
                  f"(run {signed.run_id}, {signed.subject.describe()}) with this input (Web "
                  "UI: More Actions → Send a Signal):", highlight=False)
    # Plain print: the JSON must survive copy and paste unaltered.
    print(json.dumps({"user": who, "comment": text, "token": signed.proof}))


def _control(name: str, app: str, env: str, user: str | None, text: str = "",
             print_token: bool = False) -> None:
    store = open_store()
    try:
        with catalogue_errors():
            who = acting_user(user)
            env_name = releases.env_name(store, app, env)
            if user:
                impersonated(store, who, f"{name} {app} {env_name}")
            deciding = name in ("approve", "reject")
            token = need_token(read_token(), who, name) if deciding else ""
            if deciding:  # a token limited to other applications: refused here, not sent
                tokens.refuse_out_of_scope(store, token, who, f"{name} of {app}", [app])

            async def send() -> str:
                settings = get_settings()
                client = await connect(settings)
                # A proof for the run waiting now and what it carries: no other run takes it.
                signed = (await approval_proof(
                    client, settings.approval_signing_secret(), token, who, app, env_name,
                    name, via="signal" if print_token else "cli",
                    seconds=SIGNAL_TOKEN_SECONDS if print_token else DEFAULT_PROOF_SECONDS)
                    if deciding else SignedApproval())
                if print_token:
                    _print_signal_token(name, app, env_name, who, text, signed)
                    return ""
                arg = control_input(name, who, text, signed.proof)
                return await send_update(client, app, env_name, name, arg, store,
                                         run_id=signed.run_id)

            answer = asyncio.run(send())
    finally:
        store.engine.dispose()
    if print_token:
        return
    console.print(f"[bold green]{name}[/] {app}@{env_name}: {answer}", highlight=False)


def approve(
    app: AppArg, env: EnvArg, user: AsUser = None,
    comment: Annotated[str, typer.Option(help="Why, for the record.",
                                         show_default=False)] = "",
    print_token: PrintToken = False,
) -> None:
    """Approve the release waiting on APP ENV (an approver other than the requester), signed
    with your API token: the worker checks the token is yours."""
    _control("approve", app, env, user, comment, print_token)


def reject(
    app: AppArg, env: EnvArg, user: AsUser = None,
    comment: Annotated[str, typer.Option(help="Why, for the requester.",
                                         show_default=False)] = "",
    print_token: PrintToken = False,
) -> None:
    """Reject the release waiting for approval on APP ENV, signed with your API token; its
    change goes back to developing."""
    _control("reject", app, env, user, comment, print_token)


def promote(app: AppArg, env: EnvArg, user: AsUser = None) -> None:
    """Pass the gate the release waits at, or end the current wait-for-stable early."""
    _control("promote", app, env, user)


def promote_full(app: AppArg, env: EnvArg, user: AsUser = None) -> None:
    """Skip the remaining gray/rolling steps and waits: go to 100% of the new version now."""
    _control("promote-full", app, env, user)


def pause(app: AppArg, env: EnvArg, user: AsUser = None) -> None:
    """Hold the rollout after the current step until `slipway resume`."""
    _control("pause", app, env, user)


def resume(app: AppArg, env: EnvArg, user: AsUser = None) -> None:
    """Continue a paused rollout."""
    _control("resume", app, env, user)


def abort(
    app: AppArg, env: EnvArg, user: AsUser = None,
    reason: Annotated[str, typer.Option(help="Why, for the record and the notification.",
                                        show_default=False)] = "",
) -> None:
    """Stop the release and undo its steps, newest first: the old version serves again."""
    _control("abort", app, env, user, reason)


def rollback(
    app: AppArg, env: EnvArg,
    to: Annotated[int | None, typer.Option(
        "--to", metavar="N", show_default=False,
        help="Baseline version to return to. Default: the one before the current. A recent "
             "baseline (one of the last SLIPWAY_ROLLBACK_RECENT_BASELINES, default 3, "
             "replaced within SLIPWAY_ROLLBACK_RECENT_SECONDS, default 24h) is an emergency "
             "rollback: no approval under the auto policy, freezes do not hold it. An older "
             "one waits for an approver other than you.")] = None,
    image: Annotated[str | None, typer.Option(
        metavar="REF", show_default=False,
        help="Release this image instead of an older baseline (not with --to): a release "
             "like any other, approved by the environment's policy, judged by its canary "
             "analysis and held by freezes.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the rollback until it ends.")] = False,
    gradual: Annotated[bool, typer.Option(
        help="Go through the environment's steps and stable waits. Default: a recent "
             "baseline that ran within SLIPWAY_FAST_ROLLBACK_WINDOW_SECONDS comes back at "
             "full strength in one step, without stable waits or analysis.")] = False,
    allow_rejected: AllowRejected = "",
) -> None:
    """Roll APP on ENV back: a release of baseline N's image that rolls forward as N+1.

    Releases started by hooks and trains then hold on ENV until a person resumes them with
    `slipway env resume-auto APP ENV`."""
    actor = current_user()
    with catalogue_errors():
        store = open_store()
        try:
            request = changes.rollback_request(store, app, env, to=to, image=image, actor=actor,
                                               gradual=gradual).model_copy(
                update={"allow_rejected": allow_rejected})
            notice = releases.rollback_notice(store, request)
        finally:
            store.engine.dispose()
        target = f"baseline v{request.rollback_to}" if request.rollback_to else f"image {image}"
        console.print(f"rolling {app}@{request.env} back to {target}", highlight=False)
        console.print(f"  {notice}", highlight=False)
        asyncio.run(run_release(request, wait))
