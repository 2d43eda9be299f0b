"""A fast rollback reports its outcome once the old version serves all traffic, then removes
the version rolled back in the same workflow (#29); the next release of the environment
waits for that clean-up. And while a step waits, the Web UI's current details show
healthy/desired per version and the waiting activity's latest look. Time-skipping server,
activities faked."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.testing import WorkflowEnvironment

from catalogue.store import CatalogueError
from schemas.enums import ReleaseState, Strategy
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.cli import release as release_cli
from starter.service.releases import follow, outcome_of, start_release
from tests.workflows.fakes import FakeWorld, worker
from workflows.release import ReleaseWorkflow, release_workflow_id

ENV = "prod@local"
CRASHING = "0/1 replicas of v2 healthy; replica 0 restarting (exited 3, 2 restarts)"
ANSWERS_404 = "0/1 replicas of v2 healthy; replica 0 answers 404 on /healthz"


def rollback_world() -> tuple[FakeWorld, ReleaseRequest]:
    """v2 runs (baseline 2); a fast rollback to baseline 1 whose removal of v2 is held."""
    world = FakeWorld(current_version=2, versions=[2], strategy=Strategy.GRAY, replicas=2,
                      stable_seconds=60, fast_rollback=True, block_remove_for=2)
    app = f"shop-{uuid.uuid4().hex[:8]}"
    return world, ReleaseRequest(app=app, env=ENV, rollback_to=1, requested_by="ana")


async def start(env: WorkflowEnvironment, request: ReleaseRequest,
                queue: str) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        ReleaseWorkflow.run, request, id=release_workflow_id(request.app, request.env),
        task_queue=queue)


async def early_outcome(handle: WorkflowHandle[Any, Any]) -> ReleaseOutcome:
    outcome: ReleaseOutcome | None = await asyncio.wait_for(
        handle.execute_update(ReleaseWorkflow.outcome), timeout=30)
    assert outcome is not None
    return outcome


async def event_types(handle: WorkflowHandle[Any, Any]) -> list[tuple[int, str]]:
    """(event type, activity type or "") of every event of the workflow's history."""
    return [(event.event_type, event.activity_task_scheduled_event_attributes.activity_type.name)
            async for event in handle.fetch_history_events()]


async def test_a_fast_rollback_reports_its_outcome_before_the_replaced_version_is_removed(
        env: WorkflowEnvironment) -> None:
    world, request = rollback_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, request, queue)
        try:
            outcome = await early_outcome(handle)
            # Users are on v3 (baseline 1's image) and the baseline is written, while the
            # removal of v2 is still held: the outcome did not wait for it.
            assert outcome.state == ReleaseState.SUCCEEDED
            assert outcome.baseline_version == 3
            assert outcome.after == ["remove v2 (the version rolled back)"]
            assert world.finished[-1].state == ReleaseState.SUCCEEDED
            assert "drain v2" in world.calls and "remove v2" not in world.calls
            status = await handle.query(ReleaseWorkflow.status)
            assert status.stage == "cleaning_up"
            assert "remove v2" in status.events[-1].message
            # Still running (no handle.result() here: on this server it skips time).
            assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
        finally:
            world.unblock.set()
        result = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    # The clean-up finished durably, after the outcome, in the same history.
    assert result == outcome
    assert world.calls[-2:] == ["drain v2", "remove v2"]
    assert status.stage == "succeeded"
    assert "remove v2 (the version rolled back): done" in status.events[-1].message
    events = await event_types(handle)
    answered = events.index((EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED, ""))
    removal = events.index((EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "remove_version"))
    finished = events.index((EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED, "finish_release"))
    assert finished < answered < removal


async def test_follow_early_returns_the_outcome_while_the_clean_up_goes_on(
        env: WorkflowEnvironment) -> None:
    world, request = rollback_world()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, request, queue)
        try:
            outcome = await asyncio.wait_for(follow(handle, lambda _s: None, poll_seconds=0.05,
                                                    early=True), timeout=30)
            assert outcome.baseline_version == 3 and "remove v2" not in world.calls
        finally:
            world.unblock.set()
        await handle.result()
    assert "remove v2" in world.calls


async def test_a_release_started_during_the_clean_up_waits_for_it_and_never_races_it(
        env: WorkflowEnvironment) -> None:
    world, request = rollback_world()
    runner, queue = worker(env, world)
    settings = Settings(task_queue=queue)
    release = ReleaseRequest(app=request.app, env=ENV, image="slipway/shop:v4",
                             requested_by="ana")
    async with runner:
        handle = await start(env, request, queue)
        try:
            await early_outcome(handle)
            # One release per environment: the rollback still runs (its clean-up) …
            with pytest.raises(WorkflowAlreadyStartedError):
                await start(env, release, queue)
            # … and the service refuses when the clean-up outlasts its wait, saying why.
            with pytest.raises(CatalogueError, match="still removing the version it replaced"):
                await start_release(env.client, settings, release, "v4", clean_up_wait=0.2)
            starting = asyncio.ensure_future(
                start_release(env.client, settings, release, "v4", clean_up_wait=30))
            await asyncio.sleep(0.5)
            assert not starting.done() and "remove v2" not in world.calls  # it waits
            world.unblock.set()
            started = await asyncio.wait_for(starting, timeout=30)
            second = await asyncio.wait_for(started.handle.result(), timeout=30)
        finally:
            world.unblock.set()
    assert second.state == ReleaseState.SUCCEEDED
    removed = world.calls.index("remove v2")
    prepared = [i for i, call in enumerate(world.calls) if call == "prepare"]
    assert prepared[-1] > removed  # the next release began after the clean-up ended


async def test_rollback_wait_returns_before_the_clean_up_and_says_it_goes_on(
        env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    world, request = rollback_world()
    runner, queue = worker(env, world)
    # run_release as `slipway rollback --wait` runs it, on this server, into a recording
    # console; the catalogue's checks are the CLI tests' business.
    monkeypatch.setattr(release_cli, "console", Console(record=True, width=300,
                                                        color_system=None))
    monkeypatch.setattr(release_cli, "get_settings", lambda: Settings(task_queue=queue))
    monkeypatch.setattr(release_cli, "open_store", lambda: SimpleNamespace(
        engine=SimpleNamespace(dispose=lambda: None)))
    monkeypatch.setattr(release_cli, "validate_release", lambda _store, r: (r, "rollback"))

    async def client(_settings: Settings) -> Any:
        return env.client

    monkeypatch.setattr(release_cli, "connect", client)
    async with runner:
        try:
            outcome = await asyncio.wait_for(release_cli.run_release(request, wait=True),
                                             timeout=30)
            assert outcome is not None and "remove v2" not in world.calls  # returned first
        finally:
            world.unblock.set()
        await env.client.get_workflow_handle(release_workflow_id(request.app, ENV)).result()
    printed = release_cli.console.export_text()
    assert f"released {request.app}@{ENV}: baseline v3 runs slipway/shop:v1" in printed
    assert ("still going on in the background: remove v2 (the version rolled back); follow "
            f"it with `slipway status {request.app} {ENV}`") in printed
    assert "cleaning_up: baseline v3 written; remove v2" in printed  # the event, printed


async def test_a_rollback_that_fails_gives_no_early_outcome_and_follow_reports_the_failure(
        env: WorkflowEnvironment) -> None:
    world, request = rollback_world()
    world.block_remove_for = None
    world.fail_ready_for = 3  # baseline 1's image never gets healthy: undone, rolled back
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, request, queue)
        assert await asyncio.wait_for(handle.execute_update(ReleaseWorkflow.outcome),
                                      timeout=30) is None
        with pytest.raises(CatalogueError, match="did not succeed"):
            await follow(handle, lambda _s: None, poll_seconds=0.05, early=True)
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK


async def test_outcome_of_an_ended_release_is_its_result(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1])
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, ReleaseRequest(app=f"shop-{uuid.uuid4().hex[:8]}", env=ENV,
                                                 image="slipway/shop:v2"), queue)
        result = await handle.result()
        assert await outcome_of(handle) == result  # the update cannot reach an ended run
    assert result.after == []


# -- the Web UI's current details while a step waits --------------------------------------


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata")
    return str(metadata.current_details)


async def details_until(handle: WorkflowHandle[Any, Any], text: str, seconds: float = 30,
                        ) -> str:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        details = await current_details(handle)
        if text in details:
            return details
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"current details never showed {text!r}: {details}")
        await asyncio.sleep(0.05)


async def test_current_details_show_healthy_desired_and_the_latest_look_of_a_waiting_step(
        env: WorkflowEnvironment) -> None:
    app = f"shop-{uuid.uuid4().hex[:8]}"
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      stable_seconds=30, block_ready_apps={app}, hold_detail=CRASHING,
                      hold_stable=True)
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, ReleaseRequest(app=app, env=ENV, image="slipway/shop:v2"),
                             queue)
        try:
            details = await details_until(handle, CRASHING)
            # The stage, healthy/desired per version (v2 from the look, v1 as the workflow
            # knows it) and what the waiting activity saw.
            assert details.startswith("**shifting**: step 1/3")
            assert "| v2 (new) | 0/1 | 0 % |" in details
            assert "| v1 | 4/4 | 100 % |" in details
            assert "latest look at v2 (" in details
            world.hold_detail = ANSWERS_404
            await details_until(handle, ANSWERS_404)
            world.unblock.set()
            # The stable wait: v2 healthy as far as the workflow knows, probed.
            details = await details_until(handle, "no confirmed problem")
            assert details.startswith("**waiting_stable**")
            assert "| v2 (new) | 1/1 | 20 % |" in details and "| v1 | 4/4 | 80 % |" in details
            assert "latest look" not in details  # the wait for health is over
        finally:
            world.unblock.set()
            world.hold_stable = False
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
        details = await current_details(handle)
    assert details.startswith("**succeeded**") and "probed since" not in details
