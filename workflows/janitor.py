"""JanitorWorkflow: run by a Temporal Schedule, it removes what dead lanes left behind and
reports lanes the catalogue lists whose workflow is gone."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.janitor import JanitorActivities
    from activities.notify import NotifyActivities
    from schemas.lanes import JanitorReport
    from schemas.models import NotifyInput
    from workflows import versioning

JANITOR_WORKFLOW_ID = "slipway-janitor"
JANITOR_SCHEDULE_ID = "slipway-janitor"


QUICK = timedelta(seconds=60)


# Why janitor runs are auto-upgraded: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.JANITOR)
class JanitorWorkflow:
    @workflow.run
    async def run(self) -> JanitorReport:
        removed: dict[str, list[str]] = await workflow.execute_activity_method(
            JanitorActivities.sweep_lane_orphans, start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3), summary="sweep orphaned lane resources",
        )
        lost: list[str] = await workflow.execute_activity_method(
            JanitorActivities.report_lost_lanes, start_to_close_timeout=timedelta(minutes=5),
            retry_policy=RetryPolicy(maximum_attempts=3), summary="find lost lanes",
        )
        workflow.set_current_details(
            "removed: " + (", ".join(f"{lane} ({len(keys)})" for lane, keys in removed.items())
                           or "nothing") + "; lost: " + (", ".join(lost) or "none"))
        if removed:
            await self._notify("janitor removed orphaned lane resources",
                               "; ".join(f"{lane}: {', '.join(keys)}"
                                         for lane, keys in removed.items()))
        if lost:
            await self._notify(
                "janitor: lanes lost their workflow",
                f"the catalogue listed {', '.join(lost)} as existing, but no workflow runs for "
                "them; their resources were swept above if any were left (now marked lost)")
        return JanitorReport(removed=removed, lost=lost)

    @staticmethod
    async def _notify(title: str, text: str) -> None:
        await workflow.execute_activity_method(
            NotifyActivities.notify, NotifyInput(title=title, text=text),
            start_to_close_timeout=QUICK, summary="notify")
