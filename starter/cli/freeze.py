"""``slipway freeze``: freezes and deploy windows per environment type, cluster or environment,
and the incident freeze (``freeze now``) that holds running releases at their next step."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from temporalio.client import Client

from catalogue.store import CatalogueError
from schemas.freezes import RuleKind
from schemas.settings import get_settings
from starter.cli.console import command_store, console, read_token
from starter.cli.fit import FitTable
from starter.service import freezes, tokens
from starter.service.identity import current_user
from starter.service.temporal_client import connect

freeze_cli = typer.Typer(no_args_is_help=True)
T = TypeVar("T")

ScopeArg = Annotated[str, typer.Argument(
    metavar="SCOPE", show_default=False,
    help="Where it applies: an environment type (prod), a cluster (@hz), one environment "
         "(prod@hz) or * for all.")]
Reason = Annotated[str, typer.Option(help="Why: shown to everyone whose release waits.")]
Zone = Annotated[str, typer.Option("--tz", help="IANA time zone of --from/--to/--start and "
                                               "of the recurrence, e.g. Asia/Shanghai.")]


def _add(kind: RuleKind, scope: str, reason: str, start: str, end: str, rrule: str,
         duration: str, zone: str) -> None:
    with command_store() as store:
        rule = freezes.make_rule(kind, scope, reason, start=start, end=end, rrule=rrule,
                                 duration=duration, zone=zone)
        stored, told = asyncio.run(_with_client(
            lambda client: freezes.add(store, client, rule, current_user())))
    console.print(f"#{stored.id} {stored.describe()}", highlight=False)
    if told:
        console.print(f"told {len(told)} running release(s) in its scope: {', '.join(told)}",
                      highlight=False)


@freeze_cli.command("add")
def freeze_add(
    scope: ScopeArg,
    reason: Reason = "",
    start: Annotated[str, typer.Option("--from", "--start", help="When it starts (first "
                                       "occurrence): now, or YYYY-MM-DD HH:MM.")] = "now",
    end: Annotated[str, typer.Option("--to", help="When it ends (a one-off freeze).")] = "",
    rrule: Annotated[str, typer.Option(help="Repeat by an RFC 5545 RRULE, e.g. "
                                       "'FREQ=WEEKLY;BYDAY=FR' (then give --duration).")] = "",
    duration: Annotated[str, typer.Option(help="Length of each occurrence, e.g. 60h or "
                                          "2d.")] = "",
    zone: Zone = "UTC",
    window: Annotated[bool, typer.Option("--window", help="A deploy window instead: releases "
                                         "are allowed only inside the scope's windows.")
                      ] = False,
) -> None:
    """Freeze SCOPE for a period or on a recurrence (or, with --window, allow releases only
    then). Releases wait until it opens; --no-wait ones are refused."""
    _add(RuleKind.WINDOW if window else RuleKind.FREEZE, scope, reason, start, end, rrule,
         duration, zone)


@freeze_cli.command("list")
def freeze_list() -> None:
    """Freezes and windows in force now or later, and whether each scope is open now."""
    with command_store() as store:
        found = freezes.list_rules(store)
    if not found:
        console.print("no freezes or deploy windows: every environment is open")
        return
    table = FitTable()
    table.add_column("id")
    table.add_column("kind", "wrap")
    table.add_column("scope")
    for header in ("when", "reason"):
        table.add_column(header, "text")
    table.add_column("by")
    for rule in found:
        table.add_row(str(rule.id), "incident freeze" if rule.incident else str(rule.kind),
                      rule.scope, rule.describe().split(": ", 1)[1], rule.reason,
                      rule.created_by)
    console.print(table)


@freeze_cli.command("remove")
def freeze_remove(
    rule_id: Annotated[int, typer.Argument(metavar="ID", show_default=False,
                                           help="From `slipway freeze list`.")],
) -> None:
    """Lift a freeze (or remove a window); releases waiting in it look again at once.
    Needs your API token with the freeze-admin role (`slipway token create USER --role
    freeze-admin`), which no token has by default; a token limited to some applications
    lifts only a freeze whose applications it all covers."""
    with command_store() as store:
        caller = tokens.caller_with_role(store, read_token(), "freeze-admin",
                                         "lifting a freeze", current_user(),
                                         apps=freezes.rule_apps(store, rule_id))
        removed, woken = asyncio.run(_with_client(
            lambda client: freezes.lift(store, client, rule_id, caller.user)))
    console.print(f"removed #{rule_id}: {removed.describe()}", highlight=False)
    if woken:
        console.print(f"woke {len(woken)} release(s) in its scope: {', '.join(woken)}",
                      highlight=False)


@freeze_cli.command("now")
def freeze_now(
    reason: Annotated[str, typer.Option(help="What happened (required).",
                                        show_default=False)],
    scope: Annotated[str, typer.Option(help="Where: default every prod environment.")
                     ] = "prod",
    lasting: Annotated[str, typer.Option("--for", help="End it after this long (e.g. 4h); "
                                         "default: until `slipway freeze remove`.")] = "",
) -> None:
    """Declare an incident freeze at once: new releases wait, running ones hold at their
    next step, until it is lifted."""
    with command_store() as store:
        rule, told = asyncio.run(_with_client(
            lambda client: freezes.declare_incident(store, client, scope, reason,
                                                    current_user(), lasting)))
    console.print(f"[bold red]incident freeze #{rule.id}[/] of {rule.scope}: {rule.reason}; "
                  f"lift it with `slipway freeze remove {rule.id}`", highlight=False)
    console.print(f"running releases held at their next step: {len(told)}"
                  + (f" ({', '.join(told)})" if told else ""), highlight=False)


async def _with_client(action: Callable[[Client | None], Awaitable[T]]) -> T:
    """Run ``action(client)``; without Temporal the catalogue change still stands, running
    releases are not told (they read the rules before they roll out)."""
    client: Client | None
    try:
        client = await connect(get_settings())
    except CatalogueError as error:
        console.print(f"[yellow]warning[/]: {error}; running releases were not told",
                      highlight=False)
        client = None
    return await action(client)
