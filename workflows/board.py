"""What people see of a running release: its stage, events and canary-analysis figures.

A mixin of ReleaseWorkflow: every stage change goes to the ``status`` query, the ``Stage``
search attribute and the Web UI's current details at once, so the three never disagree.
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.analysis import Measurement, analysis_table
    from schemas.models import ReleaseEvent, ReleaseStatus
    from workflows import search

# Measurements kept in the status query (the catalogue keeps them all).
ANALYSIS_SHOWN = 60


class StageBoard:
    """Stage, events and analysis of a release, as the query, search and Web UI show them."""

    progress: ReleaseStatus
    _stage_detail: str = ""

    def set_stage(self, stage: str, detail: str) -> None:
        self.progress.stage = stage
        self._stage_detail = detail
        workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
        workflow.set_current_details(f"**{stage}**: {detail}")
        self.event(f"{stage}: {detail}")

    def record_analysis(self, measurements: list[Measurement]) -> None:
        self.progress.analysis = (self.progress.analysis + measurements)[-ANALYSIS_SHOWN:]
        if measurements:
            self.event("analysis: " + "; ".join(
                f"{m.metric} {m.verdict}" + (f" ({m.detail})" if m.verdict != "passed" else "")
                for m in measurements))

    def show_analysis(self, wait_ends_at: datetime | None) -> None:
        """The Web UI's current details: the stage, the time the wait ends, the latest
        figure of every metric (shown as of the last workflow task: the time to read is the
        end time, not a ticking counter)."""
        self.progress.wait_ends_at = wait_ends_at
        details = f"**{self.progress.stage}**: {self._stage_detail}"
        if wait_ends_at is not None:
            left = (wait_ends_at - workflow.now()).total_seconds()
            details += f"\n\nwait ends at {wait_ends_at:%H:%M:%S} UTC ({left:.0f}s left)"
        details += analysis_table(self.progress.analysis)
        workflow.set_current_details(details)

    def event(self, message: str) -> None:
        self.progress.events.append(ReleaseEvent(at=workflow.now(), message=message))
