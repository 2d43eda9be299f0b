"""What people see of a running release: its stage, events and canary-analysis figures.

A mixin of ReleaseWorkflow: every stage change goes to the ``status`` query, the ``Stage``
search attribute and the Web UI's current details at once, so the three never disagree.

While a step waits for its new replicas to be healthy or stable, the current details also
show healthy/desired per version and what the waiting activity saw at its latest look: the
activity (``wait_ready``, ``watch_health``) signals it (``probe``, a ProbeReport; see
activities/support.py Relay) when it sees something new, rate-limited, because a workflow
cannot read heartbeats. The signal only changes what is shown, never what the workflow does:
no command depends on it, so it needs no patch and replays as it ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from schemas.analysis import Measurement, analysis_table
    from schemas.models import PROBE_SIGNAL, ProbeReport, ReleaseEvent, ReleaseStatus
    from workflows import search

# Measurements kept in the status query (the catalogue keeps them all).
ANALYSIS_SHOWN = 60


class Look:
    """A wait the rollout is in: the version waited for, the activity that watches it, the
    replicas wanted, since when, and the activity's latest report (None: none yet)."""

    def __init__(self, version: int, activity: str, desired: int, since: datetime) -> None:
        self.version = version
        self.activity = activity
        self.desired = desired
        self.since = since
        self.report: ProbeReport | None = None
        self.at: datetime | None = None

    def healthy(self, known: int) -> str:
        """Healthy replicas of the version waited for, as the latest look counted them."""
        if self.report is not None and self.report.healthy is not None:
            return str(self.report.healthy)
        # A stable wait starts with every replica healthy and ends at a confirmed problem.
        return str(known) if self.activity == "watch_health" else "…"

    def line(self) -> str:
        if self.report is not None and self.at is not None:
            return (f"latest look at v{self.version} ({self.at:%H:%M:%S} UTC): "
                    f"{self.report.message}")
        if self.activity == "watch_health":
            return (f"v{self.version} probed since {self.since:%H:%M:%S} UTC: no confirmed "
                    "problem")
        return f"waiting since {self.since:%H:%M:%S} UTC for v{self.version} to be healthy"


class StageBoard:
    """Stage, events and analysis of a release, as the query, search and Web UI show them."""

    progress: ReleaseStatus
    _stage_detail: str = ""
    _look: Look | None = None

    def set_stage(self, stage: str, detail: str) -> None:
        self.progress.stage = stage
        self._stage_detail = detail
        workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
        self.show_details()
        self.event(f"{stage}: {detail}")

    def record_analysis(self, measurements: list[Measurement]) -> None:
        self.progress.analysis = (self.progress.analysis + measurements)[-ANALYSIS_SHOWN:]
        if measurements:
            self.event("analysis: " + "; ".join(
                f"{m.metric} {m.verdict}" + (f" ({m.detail})" if m.verdict != "passed" else "")
                for m in measurements))

    def show_analysis(self, wait_ends_at: datetime | None) -> None:
        """Show when the analysed wait ends (None: no wait) and the latest figures."""
        self.progress.wait_ends_at = wait_ends_at
        self.show_details()

    @contextmanager
    def looking(self, version: int, activity: str, desired: int) -> Iterator[None]:
        """While the body waits for ``desired`` replicas of ``version`` (``activity`` watching
        them), the current details show its latest look."""
        self._look = Look(version, activity, desired, workflow.now())
        self.show_details()
        try:
            yield
        finally:
            self._look = None
            self.show_details()

    @workflow.signal(name=PROBE_SIGNAL)
    def probe(self, report: ProbeReport) -> None:
        """What a waiting activity saw at its latest look (sent by the activity itself)."""
        look = self._look
        if look is None or (look.version, look.activity) != (report.version, report.activity):
            return  # late: the wait it belongs to is over
        look.report, look.at = report, workflow.now()
        self.show_details()

    def show_details(self) -> None:
        """The Web UI's current details: the stage, when a stable wait ends, healthy/desired
        and traffic per version, the latest look of a wait, and the analysis figures (as of
        the last workflow task: the time to read is the end time, not a ticking counter)."""
        details = f"**{self.progress.stage}**: {self._stage_detail}"
        wait_ends_at = self.progress.wait_ends_at
        if wait_ends_at is not None and self.progress.stage == "waiting_stable":
            left = (wait_ends_at - workflow.now()).total_seconds()
            details += f"\n\nwait ends at {wait_ends_at:%H:%M:%S} UTC ({left:.0f}s left)"
        details += self._versions_table()
        if self._look is not None:
            details += f"\n\n{self._look.line()}"
        details += analysis_table(self.progress.analysis)
        workflow.set_current_details(details)

    def _versions_table(self) -> str:
        look = self._look
        rows = []
        shown = {v.version for v in self.progress.versions}
        for item in self.progress.versions:
            new = " (new)" if item.version == self.progress.to_version else ""
            healthy, desired = str(item.ready), item.desired
            if look is not None and look.version == item.version:
                healthy, desired = look.healthy(item.ready), look.desired
            rows.append(f"| v{item.version}{new} | {healthy}/{desired} | "
                        f"{item.traffic_percent:g} % |")
        if look is not None and look.version not in shown:
            new = " (new)" if look.version == self.progress.to_version else ""
            rows.insert(0, f"| v{look.version}{new} | {look.healthy(0)}/{look.desired} | 0 % |")
        if not rows:
            return ""
        return "\n\n| version | healthy / desired | traffic |\n|---|---|---|\n" + "\n".join(rows)

    def event(self, message: str) -> None:
        self.progress.events.append(ReleaseEvent(at=workflow.now(), message=message))
