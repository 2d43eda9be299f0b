"""The status view is a pure function of the status query's answer: render it to text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.console import Console

from schemas.models import ReleaseEvent, ReleaseStatus, VersionStatus
from starter.cli.status_view import render_status
from starter.service.releases import PendingActivity, ServerView

LINK = "http://localhost:8233/namespaces/default/workflows/release:shop:prod@local"
T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)


def text(execution: str, status: ReleaseStatus | None, server: ServerView | None = None,
         record: str = "") -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(render_status("shop@prod@local", execution, status, LINK, server=server,
                                record=record))
    return console.export_text()


def gray(**changes: object) -> ReleaseStatus:
    status = ReleaseStatus(
        app="shop", env="prod@local", stage="waiting_stable", strategy="gray",
        from_version=3, to_version=4, image="127.0.0.1:5000/shop:1.4.2", step=2, steps=3,
        requested_by="bob", approvers=["lead", "ana"],
        versions=[VersionStatus(version=4, desired=2, ready=1, traffic_percent=33.3),
                  VersionStatus(version=3, desired=4, ready=4, traffic_percent=66.7)],
        events=[ReleaseEvent(at=T0 + timedelta(seconds=i), message=f"event {i}")
                for i in range(12)],
    )
    return status.model_copy(update=changes)


def test_header_versions_events_and_link() -> None:
    shown = text("running", gray())
    first = shown.splitlines()[0]
    for words in ("shop@prod@local", "v3 → v4", "gray", "stage waiting_stable", "step 2/3",
                  "workflow running"):
        assert words in first
    assert "image 127.0.0.1:5000/shop:1.4.2" in shown
    # Versions in order, the new one marked, traffic rounded to whole percent.
    v3, v4 = shown.index("v3 "), shown.index("v4 (new)")
    assert v3 < v4
    assert "33%" in shown and "67%" in shown
    # Only the last eight events, with their times.
    assert "events (last 8 of 12)" in shown
    assert "09:00:11 event 11" in shown and "event 4" in shown and "event 3" not in shown
    assert shown.rstrip().endswith(f"Temporal UI: {LINK}")
    assert "awaiting" not in shown and "paused" not in shown


def test_awaiting_approval_names_the_approvers_and_the_command() -> None:
    shown = text("running", gray(stage="awaiting_approval", awaiting="approval", step=0,
                                 steps=0, versions=[]))
    assert "awaiting approval from lead, ana (requested by bob)" in shown
    assert "slipway approve shop prod@local --as USER" in shown
    assert "step" not in shown.splitlines()[0]
    assert "versions" not in shown


def test_gate_and_pause() -> None:
    assert "awaiting promote at a gate: `slipway promote shop prod@local`" in text(
        "running", gray(awaiting="promote"))
    paused = text("running", gray(paused=True, awaiting="promote"))
    # Paused wins: promote would be refused until the release resumes.
    assert "paused: continue with `slipway resume shop prod@local`" in paused
    assert "awaiting promote" not in paused


def test_finished_release_and_missing_progress() -> None:
    done = text("completed", gray(stage="succeeded", events=gray().events[:2]))
    assert "stage succeeded" in done and "workflow completed" in done
    assert "\nevents\n" in done and "(last" not in done
    nothing = text("failed", None)
    assert "workflow failed" in nothing and "no progress available" in nothing
    assert LINK in nothing


def test_no_worker_polling_is_said_with_what_the_server_and_catalogue_know() -> None:
    server = ServerView(task_queue="slipway", workers_polling=False, pending=[
        PendingActivity(name="start_version", state="started", attempt=2,
                        last_failure="activity Heartbeat timeout")])
    shown = text("running", None, server, record="release 7 running, v3 → v4")
    assert "no worker is polling task queue 'slipway'" in shown and "slipway up" in shown
    assert ("pending activity start_version: started, attempt 2, last failure: activity "
            "Heartbeat timeout") in shown
    assert "catalogue: release 7 running, v3 → v4" in shown
    slow = text("running", None, ServerView(task_queue="slipway", workers_polling=True))
    assert "did not answer the status query in time" in slow and "no worker" not in slow


REPLICAS = "0/1 replicas of v4 healthy; replica 0 restarting (exited 3, 2 restarts)"


def test_a_running_release_shows_what_its_pending_activities_last_heartbeated() -> None:
    server = ServerView(task_queue="slipway", workers_polling=True, more_pending=2, pending=[
        PendingActivity(name="wait_ready", state="started", attempt=2, detail=REPLICAS,
                        last_failure="activity Heartbeat timeout",
                        last_heartbeat=datetime.now(UTC) - timedelta(seconds=3))])
    shown = text("running", gray(stage="starting"), server)
    one_line = " ".join(shown.split())  # the line wraps at the console's width
    assert ("pending activity wait_ready: started, attempt 2, last failure: activity Heartbeat "
            f"timeout — {REPLICAS} (3s ago)") in one_line
    assert "… and 2 more pending activities" in shown
    # Beside the workflow's own progress, not instead of it.
    assert "stage starting" in shown and "v4 (new)" in shown and "event 11" in shown
    assert shown.index("pending activity") < shown.index("events (last")
    assert "no progress available" not in shown
    # Nothing pending, nothing said.
    idle = text("running", gray(), ServerView(task_queue="slipway", workers_polling=True))
    assert "pending" not in idle
