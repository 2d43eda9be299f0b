"""``slipway release`` and ``slipway status``: start a release workflow and follow it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.table import Table

from integrations.store import find_app, find_env
from schemas.models import ReleaseOutcome, ReleaseRequest, ReleaseStatus
from schemas.settings import get_settings
from starter.console import catalogue_errors, console, open_store
from starter.identity import current_user
from starter.releases import follow, release_status, start_release, validate_release
from starter.temporal_client import connect
from workflows.release import release_workflow_id


class EventPrinter:
    """Prints each new release event once, as the status query reveals them."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, status: ReleaseStatus) -> None:
        for event in status.events[self.seen:]:
            console.print(f"  [dim]{event.at:%H:%M:%S}[/] {event.message}", highlight=False)
        self.seen = len(status.events)


async def run_release(request: ReleaseRequest, wait: bool) -> ReleaseOutcome | None:
    """Validate, start, print the Web UI link and, with ``wait``, follow to the end."""
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
        outcome = await follow(started.handle, EventPrinter())
    console.print(f"[bold green]released[/] {outcome.app}@{outcome.env}: baseline "
                  f"v{outcome.baseline_version} runs {outcome.image}", highlight=False)
    return outcome


def release(
    app: Annotated[str, typer.Argument(metavar="APP", help="Application to release.")],
    env: Annotated[str, typer.Argument(metavar="ENV",
                                       help="Environment: type@cluster, or type alone.")],
    image: Annotated[str | None, typer.Option(help="Release this existing image "
                                              "instead of building.")] = None,
    ref: Annotated[str | None, typer.Option(help="Git ref of the app's source to build.")] = None,
    version: Annotated[str | None, typer.Option(help="Version label of the build "
                                                "(default: v<baseline N+1>).")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the release until it ends.")] = False,
) -> None:
    """Release APP on ENV as a durable ReleaseWorkflow (one at a time per environment)."""
    request = ReleaseRequest(app=app, env=env, image=image, ref=ref, version_label=version,
                             requested_by=current_user())
    with catalogue_errors():
        asyncio.run(run_release(request, wait))


def status(
    app: Annotated[str, typer.Argument(metavar="APP", help="Application.")],
    env: Annotated[str, typer.Argument(metavar="ENV", help="Environment: type@cluster or type.")],
) -> None:
    """Show the latest release of APP on ENV: stage, versions and events."""
    with catalogue_errors():
        store = open_store()
        with store.session() as session:
            env_name = find_env(session, find_app(session, app), env).name
        store.engine.dispose()

        async def query() -> tuple[str, ReleaseStatus | None]:
            return await release_status(await connect(get_settings()), app, env_name)

        execution, progress = asyncio.run(query())
    table = Table(title=f"{app}@{env_name}", show_header=False)
    table.add_row("workflow", f"{execution}")
    if progress is not None:
        table.add_row("stage", progress.stage)
        table.add_row("versions", f"v{progress.from_version} → v{progress.to_version}")
        table.add_row("image", progress.image or "-")
    console.print(table)
    for event in progress.events if progress else []:
        console.print(f"  [dim]{event.at:%H:%M:%S}[/] {event.message}", highlight=False)
    console.print(get_settings().ui_link(release_workflow_id(app, env_name)), highlight=False,
                  soft_wrap=True)
