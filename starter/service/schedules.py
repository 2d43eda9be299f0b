"""Temporal Schedules Slipway runs: the hourly janitor. ``slipway schedules apply`` keeps them."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from schemas.settings import Settings
from workflows.janitor import JANITOR_SCHEDULE_ID, JANITOR_WORKFLOW_ID, JanitorWorkflow


def janitor_schedule(settings: Settings, every: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(JanitorWorkflow.run, id=JANITOR_WORKFLOW_ID,
                                           task_queue=settings.task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
    )


async def apply_schedules(client: Client, settings: Settings, every: timedelta) -> str:
    """Create the janitor's schedule, or bring an existing one to ``every``; say which."""
    schedule = janitor_schedule(settings, every)
    try:
        await client.create_schedule(JANITOR_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        async def replace(_current: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(JANITOR_SCHEDULE_ID).update(replace)
        return "updated"
