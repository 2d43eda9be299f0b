"""``slipway schedules apply``: create or update Slipway's Temporal Schedules."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from schemas.durations import SCHEDULE_INTERVAL
from schemas.settings import get_settings
from starter.cli.console import catalogue_errors, console
from starter.service.schedules import apply_schedules
from starter.service.temporal_client import connect
from starter.service.validation import parse_duration
from workflows.janitor import JANITOR_SCHEDULE_ID

schedules_cli = typer.Typer(no_args_is_help=True, help="Temporal Schedules (the lane janitor).")


@schedules_cli.command("apply")
def apply(
    every: Annotated[str, typer.Option(help="How often the janitor runs (s/m/h/d).")] = "1h",
) -> None:
    """Create or update the janitor's schedule: it removes what dead lanes left behind."""
    with catalogue_errors():
        interval = timedelta(seconds=parse_duration(every, "interval", SCHEDULE_INTERVAL))

        async def run() -> str:
            settings = get_settings()
            return await apply_schedules(await connect(settings), settings, interval)

        outcome = asyncio.run(run())
    console.print(f"schedule {JANITOR_SCHEDULE_ID} {outcome}: janitor every {every}")
