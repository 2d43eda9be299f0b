"""``slipway lane …``: create, list, show, renew, update and delete swimlanes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from catalogue.store import CatalogueError
from schemas.durations import LANE_GRACE, LANE_TTL
from schemas.lanes import LaneSpec, LaneStatus, MessagePolicy
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, command_store, console, fail
from starter.cli.fit import FitTable
from starter.service.identity import current_user
from starter.service.lanes import (
    check_apps,
    create_lane,
    delete_lane,
    deploy_to_lane,
    lane_deploy_input,
    lane_name,
    lane_records,
    lane_status,
    list_lanes,
    renew_lane,
    update_lane,
)
from starter.service.temporal_client import connect
from starter.service.validation import parse_duration

lane_cli = typer.Typer(no_args_is_help=True,
                       help="Swimlanes: isolated environments for one iteration, with an idle TTL.")
Name = Annotated[str, typer.Argument(metavar="NAME", show_default=False,
                                     help="Lane name (normalised to a DNS label).")]
T = TypeVar("T")


def _apps(text: str) -> list[str]:
    return [app.strip() for app in text.split(",") if app.strip()]


def _with_client(call: Callable[[Any], Awaitable[T]]) -> T:
    async def run() -> T:
        return await call(await connect(get_settings()))

    return asyncio.run(run())


def _show(status: LaneStatus) -> None:
    if not status.ledger:
        console.print(f"[bold]{status.name}[/] {status.stage}  apps: {', '.join(status.apps)}"
                      "  (no resources left)", highlight=False)
        return
    console.print(f"[bold]{status.name}[/] {status.stage}  apps: {', '.join(status.apps)}  "
                  f"expires {status.expires_at:%Y-%m-%d %H:%M} UTC", highlight=False)
    table = FitTable()
    table.add_column("kind")
    for header in ("key", "app"):
        table.add_column(header, "wrap")
    # Details hold image refs and URLs: they fold, or go below the table.
    table.add_column("detail", "fold")
    for entry in status.ledger:
        table.add_row(str(entry.kind), entry.key, entry.app,
                      ", ".join(f"{k}={v}" for k, v in entry.detail.items()))
    console.print(table)


@lane_cli.command("create")
def create(
    name: Name,
    apps: Annotated[str, typer.Option(help="Applications in the lane, comma-separated.")],
    ttl: Annotated[str, typer.Option(help="Idle time (s/m/h/d, 1m to 365d) after which a notice "
                                     "goes out and the lane is marked for deletion.")] = "6d",
    grace: Annotated[str, typer.Option(help="Time after the notice (1m to 30d) before the lane "
                                       "is deleted, unless renewed.")] = "1d",
    ticket: Annotated[str, typer.Option(help="Ticket or iteration id.")] = "",
    desc: Annotated[str, typer.Option(help="What the lane is for.")] = "",
    fail_closed: Annotated[bool, typer.Option(
        "--fail-closed", help="While the lane's instance of an app is down, answer its keyed "
        "requests with a 503 instead of sending them to the QA baseline.")] = False,
    messages: Annotated[MessagePolicy, typer.Option(
        help="Who consumes messages the lane produces: the QA baseline's consumers "
        "(qa-consume) or only the lane's own (lane-consume).")] = MessagePolicy.QA_CONSUME,
) -> None:
    """Create a lane of only what changed: one instance per app listed, reached by requests
    carrying the lane's key (header x-slipway-lane or baggage slipway-lane) through the QA
    load balancers, and each app's own lane entry URL; plus branches, CI jobs, config, DNS,
    webhooks and consumer groups where those are configured (docs/lanes.md)."""
    with catalogue_errors():
        lane = lane_name(name)
        if not _apps(apps):
            # A refused value, like every other one: exit 1 (2 is for malformed command lines).
            fail("--apps names no application: give at least one, e.g. --apps shop,cart")
        ttl_seconds, grace_seconds = parse_duration(ttl, "--ttl", LANE_TTL), parse_duration(
            grace, "--grace", LANE_GRACE)
        with command_store() as store:
            app_list = check_apps(store, _apps(apps))
        spec = LaneSpec(name=lane, apps=app_list, ttl_seconds=ttl_seconds,
                        grace_seconds=grace_seconds, ticket=ticket, description=desc,
                        requested_by=current_user(), fail_closed=fail_closed,
                        messages=messages)
        link = _with_client(lambda client: create_lane(client, get_settings(), spec, name))
    console.print(f"creating lane [bold]{lane}[/] with {', '.join(app_list)}; follow it with "
                  f"`slipway lane show {lane}` or {link}", highlight=False, soft_wrap=True)
    console.print(f"requests with header `x-slipway-lane: {lane}` (or baggage "
                  f"`slipway-lane={lane}`) reach the lane's {', '.join(app_list)} through the QA "
                  "load balancers; everything else stays on the QA baseline", highlight=False,
                  soft_wrap=True)


@lane_cli.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Also lanes that are gone (deleted, "
                                       "failed, lost), from the catalogue.")] = False,
) -> None:
    """Running lanes with their state and expiry (--all: also the ones that are gone)."""
    with catalogue_errors():
        lanes = _with_client(list_lanes)
        gone = []
        if all_:
            with command_store() as store:
                running = {lane.name for lane in lanes}
                gone = [row for row in lane_records(store) if row.name not in running]
    table = FitTable()
    for header in ("lane", "stage"):
        table.add_column(header)
    for header in ("apps", "expires / ended (UTC)"):
        table.add_column(header, "wrap")
    table.add_column("ticket", "fold")
    for lane in lanes:
        table.add_row(lane.name, str(lane.stage), ", ".join(lane.apps),
                      f"{lane.expires_at:%Y-%m-%d %H:%M}", lane.ticket)
    for row in gone:
        table.add_row(row.name, row.stage, ", ".join(row.apps),
                      f"{row.updated_at:%Y-%m-%d %H:%M}", row.ticket)
    console.print(table)


@lane_cli.command("show")
def show(name: Name) -> None:
    """A lane's state, expiry and every resource in its ledger."""
    with catalogue_errors():
        lane = lane_name(name)
        with command_store() as store:
            known = lane_records(store, lane)
        try:
            _show(_with_client(lambda client: lane_status(client, lane)))
        except CatalogueError:
            if not known:
                raise
            # Its workflow has left Temporal's retention: the catalogue still knows it.
            row = known[0]
            since = f"{row.updated_at:%Y-%m-%d %H:%M}"
            console.print(f"[bold]{row.name}[/] {row.stage} since {since} UTC  apps: "
                          f"{', '.join(row.apps)}  ticket: {row.ticket or '-'}  (workflow "
                          f"{row.workflow_id} no longer in Temporal)", highlight=False)


@lane_cli.command("renew")
def renew(name: Name) -> None:
    """Reset the lane's idle clock."""
    with catalogue_errors():
        lane = lane_name(name)
        status = _with_client(lambda client: renew_lane(client, lane, current_user()))
    console.print(f"renewed {lane}: expires {status.expires_at:%Y-%m-%d %H:%M} UTC")


@lane_cli.command("update")
def update(
    name: Name,
    add: Annotated[str, typer.Option(help="Applications to add, comma-separated.")] = "",
    remove: Annotated[str, typer.Option(help="Applications to remove, comma-separated.")] = "",
) -> None:
    """Add or remove applications: only the difference is created or torn down."""
    with catalogue_errors():
        lane = lane_name(name)
        with command_store() as store:
            added = check_apps(store, _apps(add))
        status = _with_client(
            lambda client: update_lane(client, lane, added, _apps(remove), current_user()))
    console.print(f"{lane}: apps now {', '.join(status.apps)}")


@lane_cli.command("deploy")
def deploy(
    name: Name,
    app: Annotated[str, typer.Option(help="The lane's application to build and deploy.")],
    ref: Annotated[str | None, typer.Option(
        help="Branch, tag or commit to build. Default: feature/<lane> for a git URL source, "
             "the working tree as it is for a local directory.")] = None,
) -> None:
    """Build an app and swap it into the lane, as a push to feature/<lane> does; renews."""
    with catalogue_errors():
        lane = lane_name(name)
        with command_store() as store:
            data = lane_deploy_input(store, lane, app, ref, current_user())
        console.print(f"building {app} at {data.sha or 'its working tree'} for lane {lane}…",
                      highlight=False)
        result = _with_client(lambda client: deploy_to_lane(client, lane, data))
    console.print(f"{app} in lane {lane} now runs {result.image} at {result.url}",
                  highlight=False, soft_wrap=True)


@lane_cli.command("delete")
def delete(name: Name) -> None:
    """Delete the lane now; prints each resource removed, newest first."""
    with catalogue_errors():
        lane = lane_name(name)
        result = _with_client(lambda client: delete_lane(client, lane, current_user()))
    for entry in result.removed:
        console.print(f"  removed {entry.kind} {entry.key}", highlight=False)
    console.print(f"lane {result.name} deleted")
