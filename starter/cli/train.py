"""``slipway train``: release several applications together under one approval, follow the
train and each member, and roll a train back as one."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from catalogue.trains import trains
from schemas.approvals import train_apps
from schemas.models import ApprovalInput
from schemas.settings import get_settings
from schemas.trains import TrainMemberStatus, TrainRequest, TrainStatus
from starter.cli.console import catalogue_errors, command_store, console, open_store
from starter.cli.fit import FitTable
from starter.service import tokens
from starter.service import trains as service
from starter.service.controls import need_token, sign_approval
from starter.service.identity import (
    acting_user,
    current_user,
    impersonated,
    session_token,
)
from starter.service.temporal_client import connect
from starter.service.tokens import hash_token
from workflows.train import TrainWorkflow, train_workflow_id

train_cli = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                        help="The train's name, e.g. payday-2026-12.")]
Wait = Annotated[bool, typer.Option(help="Follow the train until it ends.")]


@train_cli.command("create")
def train_create(
    name: NameArg,
    app: Annotated[list[str], typer.Option(
        "--app", metavar="APP@ENV", show_default=False,
        help="A member, e.g. shop@prod; repeat for each (two or more).")],
    order: Annotated[str, typer.Option(
        metavar="A,B,…", help="One after the other in this order (default: all at once).")
    ] = "",
    after: Annotated[list[str] | None, typer.Option(
        "--after", metavar="APP:DEP[,DEP]", help="A dependency instead of --order: APP goes "
                                                 "out after DEP; repeat.")] = None,
    image: Annotated[list[str] | None, typer.Option(
        "--image", metavar="APP=REF", help="Release this image for APP (default: build "
                                           "from its source).")] = None,
    wait: Wait = False,
) -> None:
    """Start a release train: one approval covers it, members go out in order, and a failure
    of any member rolls back every member that went out."""
    with command_store() as store:
        request = service.train_request(store, name, app, order, after or [], image or [],
                                        current_user())
    with catalogue_errors():
        asyncio.run(_start(request, wait))


@train_cli.command("rollback")
def train_rollback(name: NameArg, wait: Wait = False) -> None:
    """Roll the latest train NAME back as one: each member returns to the baseline it
    started from, in the reverse order."""
    with command_store() as store:
        request = service.train_rollback(store, name, current_user())
    with catalogue_errors():
        asyncio.run(_start(request, wait))


async def _start(request: TrainRequest, wait: bool) -> None:
    settings = get_settings()
    client = await connect(settings)
    handle = await service.start_train(client, settings, request)
    console.print(f"[bold]train started[/]: {request.name} "
                  f"({', '.join(f'{m.app}@{m.env}' for m in request.members)})",
                  highlight=False)
    console.print(f"  Temporal UI: {settings.ui_link(handle.id, handle.result_run_id)}",
                  highlight=False, soft_wrap=True)
    if wait:
        with console.status("releasing the train…"):
            try:
                outcome = await handle.result()
            finally:
                _print(await service.train_status(client, request.name))
        console.print(f"[bold green]train {outcome.name} {outcome.state}[/]", highlight=False)


@train_cli.command("status")
def train_status(name: NameArg) -> None:
    """The train's stage and each member's state, baseline and rollback."""
    with catalogue_errors():
        async def read() -> TrainStatus:
            return await service.train_status(await connect(get_settings()), name)
        _print(asyncio.run(read()))


def _decide(name: str, approve: bool, user: str | None, comment: str) -> None:
    with catalogue_errors():
        who = acting_user(user)
        decision = "approve" if approve else "reject"
        if user:
            store = open_store()
            try:
                impersonated(store, who, f"train {decision} {name}")
            finally:
                store.engine.dispose()
        token = need_token(session_token(), who, decision)

        async def send() -> str:
            settings = get_settings()
            client = await connect(settings)
            # Bound to the run of the train waiting now, its record and members.
            signed = await sign_approval(client, settings.approval_signing_secret(),
                                         hash_token(token), who, train_workflow_id(name),
                                         decision, status_query=TrainWorkflow.status)
            if signed.subject is not None:  # a token limited to other apps: refused here
                _refuse_out_of_scope(token, who, f"{decision} of train {name}",
                                     train_apps(signed.subject))
            return await service.decide(client, name, approve,
                                        ApprovalInput(user=who, comment=comment,
                                                      proof=signed.proof),
                                        run_id=signed.run_id)
        console.print(asyncio.run(send()), highlight=False)


def _refuse_out_of_scope(token: str, who: str, what: str, apps: list[str]) -> None:
    store = open_store()
    try:
        tokens.refuse_out_of_scope(store, token, who, what, apps)
    finally:
        store.engine.dispose()


AsUser = Annotated[str | None, typer.Option(
    "--as", metavar="USER", show_default=False,
    help="Act as USER instead of yourself: admin role only, audited as yours.")]
Comment = Annotated[str, typer.Option(help="Why, for the train's history.")]


@train_cli.command("approve")
def train_approve(name: NameArg, user: AsUser = None, comment: Comment = "") -> None:
    """Approve the whole train (an approver of every member; signed with your API token,
    whose scope must cover every member's application)."""
    _decide(name, True, user, comment)


@train_cli.command("reject")
def train_reject(name: NameArg, user: AsUser = None, comment: Comment = "") -> None:
    """Reject the train: nothing is released."""
    _decide(name, False, user, comment)


@train_cli.command("list")
def train_list() -> None:
    """Recent trains and their outcome, newest first."""
    store = open_store()
    try:
        found = trains(store)
    finally:
        store.engine.dispose()
    if not found:
        console.print("no trains yet: slipway train create NAME --app A@ENV --app B@ENV")
        return
    table = FitTable()
    table.add_column("id")
    table.add_column("name", "wrap")
    table.add_column("state")
    # One member a line: app@env and its versions stay whole, the state may go under them.
    for header in ("members", "by / approved", "started"):
        table.add_column(header, "wrap")
    for train in found:
        members = [TrainMemberStatus.model_validate(raw) for raw in train.members]
        table.add_row(str(train.id), train.name + (f" (rollback of #{train.rollback_of})"
                                                   if train.rollback_of else ""),
                      str(train.state), "\n".join(_member_line(m) for m in members),
                      f"{train.requested_by} / {train.approved_by or '-'}",
                      f"{train.started_at:%m-%d %H:%M}")
    console.print(table)


def _member_line(member: TrainMemberStatus) -> str:
    went = f" → v{member.to_version}" if member.to_version else ""
    return f"{member.app}@{member.env} v{member.from_version}{went} {member.state}"


def _print(status: TrainStatus) -> None:
    console.print(f"train [bold]{status.app}[/]: {status.stage}"
                  + (f" (waiting for one of {', '.join(status.approvers)})"
                     if status.awaiting == "approval" else ""), highlight=False)
    table = FitTable()
    for header in ("member", "state"):
        table.add_column(header)
    table.add_column("baseline", "wrap")
    table.add_column("rollback")
    table.add_column("note", "text")
    for member in status.members:
        table.add_row(f"{member.app}@{member.env}", member.state,
                      f"v{member.from_version}" + (f" → v{member.to_version}"
                                                   if member.to_version else ""),
                      member.rollback or "-", member.error or "")
    console.print(table)
    for event in status.events[-8:]:
        console.print(f"  [dim]{event.at:%H:%M:%S}[/] {event.message}", highlight=False)
