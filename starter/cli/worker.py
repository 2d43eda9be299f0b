"""``slipway worker versions | promote | rollback``: the builds of the orchestration workers
(Worker Versioning) and which one new runs go to. docs/operations.md, "Upgrading Slipway"."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from catalogue.store import audit
from schemas.settings import get_settings
from schemas.versioning import DeploymentView, RoutingChange, VersionStatus
from starter.cli.console import catalogue_errors, command_store, console
from starter.cli.fit import FitTable
from starter.service import worker_versions
from starter.service.identity import current_user
from starter.service.temporal_client import connect

worker_cli = typer.Typer(
    no_args_is_help=True,
    help="Builds of the orchestration workers: which is current, ramping, draining, and "
         "which runs are pinned to which; promote a build (or ramp it), roll back.")


def _runs(ids: list[str]) -> str:
    shown = ", ".join(ids[:worker_versions.SHOWN_RUNS])
    more = len(ids) - worker_versions.SHOWN_RUNS
    return f"{len(ids)}: {shown}" + (f", … {more} more" if more > 0 else "") if ids else "0"


def render(view: DeploymentView) -> None:
    """The deployment's routing line and one row per build, newest first."""
    if not view.versions:
        console.print(f"worker deployment {view.name}: no worker of it has polled yet; "
                      f"running on unversioned workers: {_runs(view.unversioned)}",
                      highlight=False, soft_wrap=True)
        return
    routing = f"current {view.current or 'unversioned workers'}"
    if view.ramping:
        routing += f", ramping {view.ramping} at {view.ramp_percent:g}% of new runs"
    console.print(f"worker deployment {view.name}: {routing}", highlight=False, soft_wrap=True)
    table = FitTable("builds", notes_at="build")
    table.add_column("build", "fixed")
    table.add_column("status", "fixed")
    table.add_column("since", "fixed")
    table.add_column("pinned runs", "wrap")
    table.add_column("auto-upgrade runs", "wrap")
    for version in view.versions:
        status = str(version.status)
        if version.status == VersionStatus.RAMPING:
            status += f" {version.ramp_percent:g}%"
        if version.status == VersionStatus.DRAINING and not version.pinned:
            status += " (no pinned run open here)"
        since = version.current_since or version.created
        table.add_row(version.build_id, status, since.strftime("%Y-%m-%d %H:%M") if since else "-",
                      _runs(version.pinned), _runs(version.auto_upgrade))
    console.print(table)
    if view.unversioned:
        console.print(f"running on unversioned workers: {_runs(view.unversioned)} (they move "
                      "to the current build at their next task)", highlight=False, soft_wrap=True)


def _audit(action: str, change: RoutingChange) -> None:
    with command_store() as store, store.session() as db:
        audit(db, action, actor=current_user(), deployment=change.deployment,
              build=change.build_id, ramp=change.ramp_percent,
              previous_current=change.previous_current,
              previous_ramping=change.previous_ramping)
        db.commit()


@worker_cli.command("versions")
def versions() -> None:
    """What is current, ramping, draining and drained, and which running workflows are
    pinned to which build (a draining build's workers stop once none is)."""
    settings = get_settings()

    async def look() -> DeploymentView:
        return await worker_versions.describe(await connect(settings), settings)

    with catalogue_errors():
        render(asyncio.run(look()))


def _percent(text: str) -> float:
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError as error:
        raise typer.BadParameter(f"{text!r} is not a percentage such as 10 or 10%") from error
    if not 0 < value < 100:
        raise typer.BadParameter("a ramp is more than 0% and less than 100% (promote without "
                                 "--ramp for all of it)")
    return value


@worker_cli.command("promote")
def promote(
    build: Annotated[str, typer.Argument(metavar="BUILD", show_default=False,
                                         help="A build ID (`slipway worker versions`).")],
    ramp: Annotated[str, typer.Option(
        "--ramp", metavar="N%", show_default=False,
        help="Send N% of new runs to BUILD, the rest to the current build.")] = "",
) -> None:
    """Make BUILD current: new runs and auto-upgrade runs (lanes, the janitor) go to it; runs
    pinned to other builds (releases, trains) finish where they started. A build whose
    workers never polled is refused, and nothing changes."""
    settings = get_settings()
    percent = _percent(ramp) if ramp else None

    async def change() -> RoutingChange:
        return await worker_versions.promote(await connect(settings), settings, build, percent)

    with catalogue_errors():
        done = asyncio.run(change())
    _audit("worker.promoted", done)
    if percent is None:
        console.print(f"build {build} is current in {done.deployment} (was "
                      f"{done.previous_current or 'unversioned workers'}); runs pinned to "
                      "other builds stay on them: `slipway worker versions` shows them drain",
                      highlight=False, soft_wrap=True)
    else:
        console.print(f"build {build} takes {percent:g}% of new runs in {done.deployment}; "
                      f"{done.previous_current or 'unversioned workers'} stays current "
                      "(`slipway worker rollback` stops the ramp)", highlight=False,
                      soft_wrap=True)


@worker_cli.command("rollback")
def rollback() -> None:
    """Undo the last promotion: a ramp stops, else the build current before this one is
    current again (its workers must be running). Runs pinned to the build left stay on it."""
    settings = get_settings()

    async def change() -> RoutingChange:
        return await worker_versions.rollback(await connect(settings), settings)

    with catalogue_errors():
        done = asyncio.run(change())
    _audit("worker.rolled_back", done)
    if done.previous_ramping and done.build_id == done.previous_current:
        console.print(f"stopped the ramp of {done.previous_ramping}: every new run goes to "
                      f"{done.build_id}", highlight=False, soft_wrap=True)
    else:
        console.print(f"build {done.build_id} is current again in {done.deployment} (was "
                      f"{done.previous_current})", highlight=False, soft_wrap=True)
