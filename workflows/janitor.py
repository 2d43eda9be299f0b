"""JanitorWorkflow: run by a Temporal Schedule, it removes what dead lanes left behind."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.janitor import JanitorActivities
    from activities.notify import NotifyActivities
    from schemas.models import NotifyInput

JANITOR_WORKFLOW_ID = "slipway-janitor"
JANITOR_SCHEDULE_ID = "slipway-janitor"


@workflow.defn
class JanitorWorkflow:
    @workflow.run
    async def run(self) -> dict[str, list[str]]:
        removed: dict[str, list[str]] = await workflow.execute_activity_method(
            JanitorActivities.sweep_lane_orphans, start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3), summary="sweep orphaned lane resources",
        )
        workflow.set_current_details(
            "removed: " + (", ".join(f"{lane} ({len(keys)})" for lane, keys in removed.items())
                           or "nothing"))
        if removed:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                NotifyInput(title="janitor removed orphaned lane resources",
                            text="; ".join(f"{lane}: {', '.join(keys)}"
                                           for lane, keys in removed.items())),
                start_to_close_timeout=timedelta(seconds=60), summary="notify",
            )
        return removed
