"""``slipway release`` and ``slipway status``: start a release workflow, follow it, read its past.

``release`` is a group whose default command is ``start``: ``slipway release APP ENV [...]``
starts a release (the documented form), and ``slipway release history APP ENV`` lists them.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from catalogue.holds import hold_of
from catalogue.tables import AuditEvent
from schemas.durations import HISTORY_WINDOW
from schemas.models import ReleaseOutcome, ReleaseRequest, ReleaseStatus
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, console, fail, open_store, read_token
from starter.cli.fit import FitTable
from starter.cli.status_view import pending_line, render_status
from starter.service import changes, releases, tokens
from starter.service.calendar import change_calendar
from starter.service.controls import watch
from starter.service.identity import current_user
from starter.service.releases import (
    PendingActivity,
    ServerView,
    follow,
    release_report,
    start_release,
    validate_release,
)
from starter.service.temporal_client import connect
from starter.service.validation import parse_duration
from workflows.release import release_workflow_id

DEFAULT_COMMAND = "start"


class DefaultCommandGroup(typer.core.TyperGroup):
    """A group that runs its default command when the first word names no subcommand.

    ``slipway release shop prod --wait`` therefore means ``slipway release start shop prod
    --wait`` while ``slipway release history shop prod`` still reaches ``history``. An app
    literally named like a subcommand is released with the explicit ``release start …``.
    """

    default_command = DEFAULT_COMMAND

    def parse_args(self, ctx: typer._click.Context, args: list[str]) -> list[str]:
        # Route before the group parses: options of the default command (--image …) may come
        # first, and the group itself would refuse them as unknown options.
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: typer._click.Context, args: list[str],
                        ) -> tuple[str | None, typer._click.Command | None, list[str]]:
        if args and args[0] not in self.commands:
            args = [self.default_command, *args]
        return super().resolve_command(ctx, args)


release_cli = typer.Typer(
    cls=DefaultCommandGroup, no_args_is_help=True,
    help="Start a release (default: `slipway release APP ENV [OPTIONS]` runs `start`), or list "
         "past releases with `slipway release history APP ENV`.",
)

AppArg = Annotated[str, typer.Argument(metavar="APP", help="Application.", show_default=False)]
EnvArg = Annotated[str, typer.Argument(metavar="ENV", show_default=False,
                                       help="Environment: type@cluster, or type alone.")]
AllowRejected = Annotated[str, typer.Option(
    "--allow-rejected", metavar="REASON", show_default=False,
    help="Release an image this application rejected (a release of it was rolled back; "
         "`slipway rejected list APP`) all the same: the reason is recorded on the release "
         "and audited.")]


class EventPrinter:
    """Prints each new release event once, as the status query reveals them, and a pending
    activity's line each time ``follow`` reports that its heartbeat detail changed."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, status: ReleaseStatus) -> None:
        for event in status.events[self.seen:]:
            console.print(f"  [dim]{event.at:%H:%M:%S}[/] {event.message}", highlight=False)
        self.seen = len(status.events)

    def activity(self, item: PendingActivity) -> None:
        # A Text, so brackets in a heartbeat detail are not read as markup.
        console.print(Text.assemble((f"  {datetime.now(UTC):%H:%M:%S} ", "dim"),
                                    pending_line(item)), highlight=False)


async def run_release(request: ReleaseRequest, wait: bool) -> ReleaseOutcome | None:
    """Validate, start, print the Web UI link and, with ``wait``, follow to the end (a
    rollback's until its outcome is decided: users on the old version; what the workflow
    still does after that is named, not waited for)."""
    settings = get_settings()
    store = open_store()
    try:
        request, summary = validate_release(store, request)
    finally:
        store.engine.dispose()
    client = await connect(settings)
    started = await start_release(client, settings, request, summary)
    console.print(f"[bold]release started[/]: {started.summary}", highlight=False)
    console.print(f"  Temporal UI: {started.link}", highlight=False, soft_wrap=True)
    if not wait:
        return None
    with console.status("releasing…"):
        printer = EventPrinter()
        outcome = await follow(started.handle, printer, on_activity=printer.activity,
                               early=request.rollback_to is not None)
    console.print(f"[bold green]released[/] {outcome.app}@{outcome.env}: baseline "
                  f"v{outcome.baseline_version} runs {outcome.image}", highlight=False)
    if outcome.after:
        console.print(f"  still going on in the background: {'; '.join(outcome.after)}; "
                      f"follow it with `slipway status {outcome.app} {outcome.env}` or the "
                      "Temporal UI link above", highlight=False)
    return outcome


@release_cli.command(DEFAULT_COMMAND)
def release(
    app: AppArg,
    env: EnvArg,
    image: Annotated[str | None, typer.Option(help="Release this existing image "
                                              "instead of building.")] = None,
    ref: Annotated[str | None, typer.Option(help="Git ref of the app's source to build.")] = None,
    version: Annotated[str | None, typer.Option(help="Version label of the build "
                                                "(default: v<baseline N+1>).")] = None,
    change: Annotated[int | None, typer.Option(
        "--change", metavar="ID", show_default=False,
        help="Carry out change ID (submitted, of this APP and ENV); it brings its own image, "
             "ref, replicas or resources, so --image/--ref/--version are not allowed with it.",
    )] = None,
    wait: Annotated[bool, typer.Option(help="Follow the release until it ends.")] = False,
    no_wait: Annotated[bool, typer.Option(
        "--no-wait", help="Refuse at once if ENV is frozen or outside its deploy windows "
                          "(default: the release waits until it opens).")] = False,
    break_glass: Annotated[str, typer.Option(
        "--break-glass", metavar="REASON",
        help="Release through a freeze or outside the windows; needs your API token with "
             "the break-glass role (not granted by default: `slipway token create USER "
             "--role break-glass`; one limited with --app/--team must cover APP) and a "
             "second approver, and is marked break glass in the "
             "audit and notifications.")] = "",
    allow_rejected: AllowRejected = "",
) -> None:
    """Release APP on ENV as a durable ReleaseWorkflow (one at a time per environment)."""
    actor = current_user()
    with catalogue_errors():
        if break_glass:
            _check_break_glass_role(actor, app)
        if change is None:
            request = ReleaseRequest(app=app, env=env, image=image, ref=ref,
                                     version_label=version, requested_by=actor)
        else:
            request = _change_request(app, env, change, actor, image, ref, version)
        request = request.model_copy(update={"no_wait": no_wait, "break_glass": break_glass,
                                             "allow_rejected": allow_rejected})
        asyncio.run(run_release(request, wait))


def _check_break_glass_role(actor: str, app: str) -> None:
    """Break glass is for those given the role: the acting user's token must carry it, and
    its scope cover ``app``."""
    store = open_store()
    try:
        tokens.caller_with_role(store, read_token(), "break-glass",
                                "--break-glass", actor, apps=[app])
    finally:
        store.engine.dispose()


def _change_request(app: str, env: str, change_id: int, actor: str, *given: str | None,
                    ) -> ReleaseRequest:
    if any(given):
        fail("--change brings its own image/ref; drop --image, --ref and --version")
    store = open_store()
    try:
        env_name = releases.env_name(store, app, env)
        request = changes.change_release_request(store, change_id, actor)
    finally:
        store.engine.dispose()
    if (request.app, request.env) != (app, env_name):
        fail(f"change {change_id} belongs to {request.app} {request.env}, not {app} {env_name}")
    return request


@release_cli.command("history")
def history(
    app: Annotated[str | None, typer.Argument(metavar="[APP]", show_default=False,
                                              help="Application (not with --all).")] = None,
    env: Annotated[str | None, typer.Argument(metavar="[ENV]", show_default=False,
                                              help="Environment (not with --all).")] = None,
    every_app: Annotated[bool, typer.Option(
        "--all", help="The change calendar: releases of every application and environment "
                      "started within --since.")] = False,
    since: Annotated[str, typer.Option(
        metavar="DURATION", help="With --all: how far back, e.g. 7d or 24h.")] = "7d",
    as_json: Annotated[bool, typer.Option(
        "--json", help="With --all: print JSON (for change-advisory reviews).")] = False,
) -> None:
    """List the releases of APP on ENV, newest first, with the baseline each wrote; or, with
    --all, every release across applications (the change calendar)."""
    if every_app or as_json:
        if app or env:
            fail("--all lists every application: leave out APP and ENV")
        _calendar(since, as_json)
        return
    if not app or not env:
        fail("give APP and ENV, or --all for every application")
    with catalogue_errors():
        store = open_store()
        try:
            rows = changes.release_history(store, app, env)
            refused = changes.refusals(store, app, env)
        finally:
            store.engine.dispose()
    if refused:
        _print_refusals(refused)
    if not rows:
        console.print(f"no releases of {app} on {env} yet: slipway release {app} {env}",
                      highlight=False)
        return
    # A succeeded release wrote baseline v<to>; the rest wrote none. On a narrow terminal
    # the image and the note go below the table, marked on the release's state.
    table = FitTable(notes_at="state")
    table.add_column("release")
    table.add_column("state")
    table.add_column("versions", "wrap")
    table.add_column("image", "fold")
    table.add_column("by / approved", "wrap")
    table.add_column("started", "wrap")
    table.add_column("note", "text")
    for row in rows:
        item = row.release
        versions = f"v{item.from_version} → v{item.to_version}"
        if item.rollback_to is not None:
            versions += f"\n(rollback to v{item.rollback_to})"
        elif item.rollback:
            versions += f"\n(rollback of v{item.from_version})"
        by = (item.requested_by or "-") + (f" / {item.approved_by}" if item.approved_by else "")
        note = "; ".join(text for text in (f"change {item.change_id}" if item.change_id else "",
                                           item.error) if text)
        table.add_row(str(item.id), item.state, versions, item.image or "-", by,
                      item.started_at.strftime("%m-%d %H:%M"), note or "-")
    console.print(table)


def _calendar(since: str, as_json: bool) -> None:
    with catalogue_errors():
        seconds = parse_duration(since, "--since", HISTORY_WINDOW)
        store = open_store()
        try:
            entries = change_calendar(store, seconds)
        finally:
            store.engine.dispose()
    if as_json:
        print(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2))
        return
    if not entries:
        console.print(f"no releases in the last {since}", highlight=False)
        return
    table = FitTable(f"releases in the last {since}, newest first", notes_at="release")
    table.add_column("started", "wrap")
    # As the commands take them: `slipway release history shop prod@local`.
    table.add_column("app env", "wrap")
    for header in ("release", "state"):
        table.add_column(header)
    for header in ("versions", "by / approved"):
        table.add_column(header, "wrap")
    table.add_column("image", "fold")
    for entry in entries:
        versions = f"v{entry.from_version} → v{entry.to_version}" + (
            ", rollback" if entry.rollback else "")
        by = (entry.requested_by or "-") + (f" / {entry.approved_by}"
                                            if entry.approved_by else "")
        table.add_row(entry.started_at.strftime("%m-%d %H:%M"), f"{entry.app} {entry.env}",
                      str(entry.release_id), entry.state, versions, by, entry.image or "-")
    console.print(table)


def _print_refusals(events: list[AuditEvent]) -> None:
    """Refused approvals, controls and API requests: who, what, why, through which door."""
    table = FitTable("refused")
    table.add_column("at", "wrap")
    table.add_column("who")
    table.add_column("what", "wrap")
    table.add_column("door")
    table.add_column("why", "text")
    for event in events:
        detail = event.detail
        what = detail.get("refused") or f"{detail.get('method', '')} {detail.get('path', '')}"
        table.add_row(event.at.strftime("%m-%d %H:%M:%S"), event.actor or "-", str(what),
                      str(detail.get("door", "receiver" if "path" in detail else "-")),
                      str(detail.get("reason", "")))
    console.print(table)


def _latest_record(app: str, env: str) -> str:
    """The catalogue's row of the environment's latest release, as one line."""
    store = open_store()
    try:
        rows = changes.release_history(store, app, env)
    finally:
        store.engine.dispose()
    if not rows:
        return "no release recorded yet"
    item = rows[0].release
    return (f"release {item.id} {item.state}, v{item.from_version} → v{item.to_version}, "
            f"by {item.requested_by or '-'}, started {item.started_at:%Y-%m-%d %H:%M}")


def _print_hold(app: str, env: str) -> None:
    """After a manual rollback: automatic releases wait for a person to resume them."""
    store = open_store()
    try:
        hold = hold_of(store, app, env)
    finally:
        store.engine.dispose()
    if hold:
        console.print(f"⏸ {hold}: resume them with `slipway env resume-auto {app} {env}`",
                      style="bold yellow", highlight=False)


def status(
    app: AppArg,
    env: EnvArg,
    watch_: Annotated[bool, typer.Option(
        "--watch", "-w", help="Refresh every second until the release ends (Ctrl-C stops "
                              "watching; the release goes on).")] = False,
) -> None:
    """Show the latest release of APP on ENV: stage, step, versions, traffic and events."""
    settings = get_settings()
    with catalogue_errors():
        store = open_store()
        try:
            env_name = releases.env_name(store, app, env)
        finally:
            store.engine.dispose()
        title = f"{app}@{env_name}"
        link = settings.ui_link(release_workflow_id(app, env_name))

        def view(execution: str, progress: ReleaseStatus | None,
                 server: ServerView | None) -> Any:
            return render_status(title, execution, progress, link, server=server)

        async def once() -> None:
            client = await connect(settings)
            execution, progress, server = await release_report(client, app, env_name)
            record = "" if progress is not None else _latest_record(app, env_name)
            console.print(render_status(title, execution, progress, link, server=server,
                                        record=record))
            _print_hold(app, env_name)

        async def live() -> None:
            client = await connect(settings)
            with Live(console=console, refresh_per_second=4, transient=False) as screen:
                await watch(client, app, env_name,
                            lambda execution, progress, server: screen.update(
                                view(execution, progress, server)))

        try:
            asyncio.run(live() if watch_ else once())
        except KeyboardInterrupt:
            console.print("stopped watching; the release goes on", style="dim")
