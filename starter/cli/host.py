"""``slipway host list | cordon | uncordon | drain``: the Docker hosts replicas are placed on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer

from catalogue.store import as_utc
from schemas.hosts import DrainOutcome
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, command_store, console
from starter.cli.fit import FitTable
from starter.service.hosts import cordon, list_hosts, start_drain
from starter.service.identity import current_user
from starter.service.temporal_client import connect

host_cli = typer.Typer(
    no_args_is_help=True,
    help="Docker hosts of the clusters (SLIPWAY_CLUSTERS): list them; cordon one so it gets "
         "no new replica (what runs there keeps running), or uncordon it; drain one (move "
         "what runs there, with no failed request).")

HostArg = Annotated[str, typer.Argument(metavar="HOST", help="Host name (`slipway host list`).",
                                        show_default=False)]
ClusterOpt = Annotated[str, typer.Option(
    "--cluster", help="The host's cluster, when its name is in several.", show_default=False)]


@host_cli.command("list")
def host_list() -> None:
    """Every Docker host: cluster, address replicas publish on, capacity, labels, its agent
    (last seen) and state."""
    with command_store() as store:
        views = list_hosts(store, get_settings())
    table = FitTable("Docker hosts", notes_at="host")
    table.add_column("cluster", "fold")
    table.add_column("host", "fold")
    table.add_column("address", "fold")
    table.add_column("capacity")
    table.add_column("labels", "text")
    table.add_column("agent", "text")
    table.add_column("state", "text")
    now = datetime.now(UTC)
    for view in views:
        state = "lost: " if view.lost else ""
        agent = "none registered"
        if view.last_seen is not None:
            ago = (now - as_utc(view.last_seen)).total_seconds()
            agent = f"seen {ago:.0f}s ago" + (" (LB)" if view.load_balancer else "")
        state += "open"
        if view.cordoned:
            when = view.changed_at.strftime("%Y-%m-%d %H:%M") if view.changed_at else "?"
            state = ("lost: " if view.lost else "") + (
                f"cordoned: {view.reason} ({view.changed_by}, {when})")
        labels = ", ".join(f"{k}={v}" for k, v in sorted(view.host.labels.items())) or "-"
        table.add_row(view.cluster, view.host.name, view.host.address,
                      str(view.host.capacity or "no limit"), labels, agent, state)
    console.print(table)


@host_cli.command("cordon")
def host_cordon(
    host: HostArg,
    reason: Annotated[str, typer.Option(help="Why (shown by `host list`, audited).",
                                        show_default=False)],
    cluster: ClusterOpt = "",
) -> None:
    """Place no new replica on HOST (releases, lanes, restarts choose other hosts); what runs
    there keeps running and serving."""
    with command_store() as store:
        where, _state = cordon(store, get_settings(), host, cluster, reason, current_user())
    console.print(f"cordoned {host} ({where}): new replicas go to its other hosts",
                  highlight=False)


@host_cli.command("uncordon")
def host_uncordon(host: HostArg, cluster: ClusterOpt = "") -> None:
    """Let HOST get new replicas again."""
    with command_store() as store:
        where, _state = cordon(store, get_settings(), host, cluster, "", current_user(),
                               cordoned=False)
    console.print(f"uncordoned {host} ({where})", highlight=False)


@host_cli.command("drain")
def host_drain(
    host: HostArg,
    reason: Annotated[str, typer.Option(
        help="Why (needed unless HOST is cordoned already).", show_default=False)] = "",
    cluster: ClusterOpt = "",
    wait: Annotated[bool, typer.Option(help="Follow the drain until it ends.")] = False,
) -> None:
    """Cordon HOST and move every replica off it, one at a time, as the durable workflow
    host-drain:CLUSTER:HOST: each is drained from its load balancer, started again on another
    host and put back in rotation, so users see no failed request. A lane's replicas and an
    environment mid-release stay (the outcome says so)."""
    settings = get_settings()

    async def drain() -> DrainOutcome | None:
        with command_store() as store:
            client = await connect(settings)
            handle = await start_drain(client, store, settings, host, cluster, reason,
                                       current_user())
        console.print(f"draining {host}: {settings.ui_link(handle.id)}", highlight=False,
                      soft_wrap=True)
        if not wait:
            return None
        with console.status(f"moving replicas off {host}…"):
            outcome: DrainOutcome = await handle.result()
        return outcome

    with catalogue_errors():
        outcome = asyncio.run(drain())
    if outcome is None:
        return
    console.print(f"[bold green]drained[/] {outcome.host} ({outcome.cluster}): "
                  f"{len(outcome.moved)} replica(s) moved", highlight=False)
    for line in outcome.moved:
        console.print(f"  moved {line}", highlight=False)
    for line in outcome.skipped:
        console.print(f"  [yellow]left[/] {line}", highlight=False)
