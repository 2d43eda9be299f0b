"""Never silent (#29): while a release step waits (``wait_ready``, ``watch_health``), status,
``status --watch`` and ``release --wait`` show what the step's heartbeat says, read from the
server's description of the workflow (its pending activities), on the time-skipping server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from rich.console import Console
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from schemas.enums import ReleaseState
from schemas.models import ReleaseRequest, ReleaseStatus
from starter.cli import release as release_cli
from starter.cli.status_view import render_status
from starter.service import releases
from starter.service.controls import watch
from starter.service.releases import (
    DETAIL_CHARS,
    PendingActivity,
    ServerView,
    _changed,
    follow,
    release_report,
)
from tests.workflows.fakes import FakeWorld, worker
from workflows.release import ReleaseWorkflow, release_workflow_id

ENV = "prod@local"
RESTARTING = "0/1 replicas of v2 healthy; replica 0 restarting (exited 3)"
CRASHING = "0/1 replicas of v2 healthy; replica 0 restarting (exited 3, 2 restarts)"


def held_world(detail: str = RESTARTING) -> tuple[FakeWorld, ReleaseRequest]:
    """A release whose wait_ready of v2 is held, heartbeating ``detail``."""
    app = f"shop-{uuid.uuid4().hex[:8]}"
    world = FakeWorld(current_version=1, versions=[1], block_ready_apps={app},
                      hold_detail=detail)
    return world, ReleaseRequest(app=app, env=ENV, requested_by="ana")


async def start(env: WorkflowEnvironment, release: ReleaseRequest,
                queue: str) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        ReleaseWorkflow.run, release, id=release_workflow_id(release.app, release.env),
        task_queue=queue)


async def report_until(env: WorkflowEnvironment, app: str, detail: str,
                       ) -> tuple[str, ReleaseStatus | None, ServerView]:
    """release_report until the server has the heartbeat ``detail`` (heartbeats are
    throttled: up to a second)."""
    for _ in range(100):
        report = await release_report(env.client, app, ENV)
        if any(item.detail == detail for item in report[2].pending):
            return report
        await asyncio.sleep(0.1)
    raise AssertionError(f"never reported {detail!r}: {report}")


def rendered(app: str, execution: str, progress: ReleaseStatus | None,
             server: ServerView | None) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(render_status(f"{app}@{ENV}", execution, progress, "link", server=server))
    return console.export_text()


async def test_status_shows_the_heartbeat_of_a_running_step(env: WorkflowEnvironment) -> None:
    world, release = held_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        try:
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)
            execution, progress, server = await report_until(env, release.app, RESTARTING)
            # The worker answered: the workflow's progress and the server's pending activity.
            assert execution == "running" and progress is not None
            [item] = server.pending
            assert (item.name, item.state, item.attempt) == ("wait_ready", "started", 1)
            assert item.last_heartbeat is not None and server.more_pending == 0
            shown = rendered(release.app, execution, progress, server)
            assert f"pending activity wait_ready: started, attempt 1 — {RESTARTING}" in shown
            assert "no progress available" not in shown

            # status --watch: the same view, refreshed, carries the detail too.
            views: list[str] = []

            def on_status(execution: str, progress: ReleaseStatus | None,
                          server: ServerView | None) -> None:
                views.append(rendered(release.app, execution, progress, server))
                if len(views) == 3:
                    world.unblock.set()

            assert await watch(env.client, release.app, ENV, on_status,
                               interval=0.05) == "completed"
            assert RESTARTING in views[0]
            assert "pending activity" not in views[-1]  # ended: nothing pending
        finally:
            world.unblock.set()
        assert (await handle.result()).state == ReleaseState.SUCCEEDED


async def test_follow_says_each_change_of_the_detail_once(
        env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    world, release = held_world()
    runner, queue = worker(env, world)
    statuses: list[ReleaseStatus] = []
    said: list[PendingActivity] = []
    # release --wait's printer, into a recording console.
    monkeypatch.setattr(release_cli, "console",
                        Console(record=True, width=200, color_system=None))
    printer = release_cli.EventPrinter()

    def on_activity(item: PendingActivity) -> None:
        said.append(item)
        printer.activity(item)

    async with runner:
        handle = await start(env, release, queue)
        # quiet_seconds=0: the held activity is reported at once instead of after 10 s.
        following = asyncio.ensure_future(follow(handle, statuses.append, poll_seconds=0.05,
                                                 on_activity=on_activity, quiet_seconds=0))
        try:
            await until(lambda: [item.detail for item in said] == [RESTARTING])
            polls = len(statuses)
            await until(lambda: len(statuses) > polls + 20)  # many polls, nothing new said
            assert [item.detail for item in said] == [RESTARTING]
            world.hold_detail = CRASHING
            await until(lambda: len(said) == 2)
            await until(lambda: len(statuses) > polls + 40)
        finally:
            world.unblock.set()
        outcome = await asyncio.wait_for(following, timeout=30)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert [(item.name, item.detail) for item in said] == [("wait_ready", RESTARTING),
                                                           ("wait_ready", CRASHING)]
    printed = release_cli.console.export_text().splitlines()
    assert len(printed) == 2
    assert printed[0].endswith(f"pending activity wait_ready: started, attempt 1 — {RESTARTING}")
    assert printed[1].endswith(f"— {CRASHING}")


async def until(predicate: Any, seconds: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition never held")
        await asyncio.sleep(0.05)


async def test_details_are_cut_and_at_most_three_activities_shown(
        env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    world, release = held_world("replica 0 restarting\n" + "x" * 500)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        try:
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)
            for _ in range(100):
                _, _, server = await release_report(env.client, release.app, ENV)
                if server.pending and server.pending[0].detail:
                    break
                await asyncio.sleep(0.1)
            detail = server.pending[0].detail
            assert len(detail) == DETAIL_CHARS and detail.endswith("…")
            assert detail.startswith("replica 0 restarting xxx")  # one line
            monkeypatch.setattr(releases, "PENDING_SHOWN", 0)
            _, _, bounded = await release_report(env.client, release.app, ENV)
            assert bounded.pending == [] and bounded.more_pending == 1
        finally:
            world.unblock.set()
        await handle.result()


def test_a_step_that_goes_well_stays_quiet_and_a_retried_one_speaks_at_once() -> None:
    said: dict[str, tuple[str, int, str]] = {}
    seen: dict[str, float] = {}
    fine = PendingActivity(name="watch_health", state="started", attempt=1, activity_id="7",
                           detail="watching v2")
    assert _changed([fine], said, seen, quiet_seconds=10) == []
    retried = fine.model_copy(update={"attempt": 2, "last_failure": "dockerd timed out"})
    assert _changed([retried], said, seen, quiet_seconds=10) == [retried]
    assert _changed([retried], said, seen, quiet_seconds=10) == []  # said once
    slow = PendingActivity(name="wait_ready", state="started", attempt=1, activity_id="8",
                           detail="0/1 replicas of v2 healthy")
    assert _changed([slow], said, seen, quiet_seconds=0) == [slow]
