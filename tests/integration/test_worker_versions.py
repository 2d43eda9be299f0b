"""The upgrade drill (issue #32), on the real dev server: a release waits for approval on
build A; build B, whose ``ReleaseWorkflow`` differs incompatibly (tests/support/drill_build.py),
starts and is promoted with `slipway worker promote`; the approval arrives and the release
finishes on A; a new release runs on B; A drains and stops. The control: the same upgrade
without versioning (the workflow types as they were before it, on unversioned workers)
fails the waiting release on B's worker.

Workers are built as worker.py builds them (``deployment_config``, ``ClaimCurrentVersion``)
around the fake activities of the workflow tests: the drill is about which worker gets a
run's workflow tasks. The dev server is the drill's own: build B's histories are not this
commit's code and must stay out of the replay gate's export (tests/support/history_export.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowHandle, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from schemas.enums import ReleaseState
from schemas.models import ReleaseRequest
from schemas.settings import Settings, get_settings
from tests.integration.conftest import _temporal_cli
from tests.support.cli import ok, run
from tests.support.drill_build import (
    IncompatibleReleaseWorkflow,
    UnversionedIncompatibleReleaseWorkflow,
    UnversionedReleaseWorkflow,
)
from tests.support.workers import this_build, workers
from tests.workflows.fakes import FakeWorld, signed
from workflows import search
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.integration

# How soon the server counts a version without open pinned runs as drained (defaults: minutes).
DRAINAGE = ["--dynamic-config-value", 'matching.wv.VersionDrainageStatusVisibilityGracePeriod="1s"',
            "--dynamic-config-value", 'matching.wv.VersionDrainageStatusRefreshInterval="1s"']


@pytest_asyncio.fixture
async def server() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_cli(), data_converter=pydantic_data_converter,
        search_attributes=list(search.ALL), dev_server_extra_args=DRAINAGE)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def queue(server: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A task queue (= the worker deployment) of its own; the CLI pointed at the server."""
    name = f"drill-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", server.client.service_client.config.target_host)
    monkeypatch.setenv("SLIPWAY_TASK_QUEUE", name)
    get_settings.cache_clear()
    yield name
    get_settings.cache_clear()


def on_build(queue: str, build_id: str, tmp_path: Path) -> dict[str, Any]:
    """The Worker options worker.py gives a worker of build ``build_id``."""
    return this_build(Settings(state_dir=tmp_path, task_queue=queue, build_id=build_id))


async def awaiting_approval(handle: WorkflowHandle[Any, Any]) -> None:
    async with asyncio.timeout(30):
        while (await handle.query(ReleaseWorkflow.status)).awaiting != "approval":
            await asyncio.sleep(0.1)


async def task_builds(handle: WorkflowHandle[Any, Any]) -> set[str]:
    """The builds whose workers completed the run's workflow tasks."""
    return {event.workflow_task_completed_event_attributes.deployment_version.build_id
            async for event in handle.fetch_history_events()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED}


def row(output: str, build_id: str) -> str:
    """The line of `worker versions`' table whose first cell is ``build_id``."""
    return next((line for line in output.splitlines()
                 if line.strip("│┃ ").startswith(f"{build_id} ")), "")


async def cli(command: str) -> str:
    """`slipway <command>` in-process (it runs its own event loop: off this one)."""
    return (await asyncio.to_thread(ok, command)).output


def release(app: str) -> ReleaseRequest:
    return ReleaseRequest(app=app, env="prod@local", requested_by="ana")


async def test_a_release_waiting_on_build_a_finishes_there_after_b_becomes_current(
    server: WorkflowEnvironment, queue: str, tmp_path: Path,
) -> None:
    client = server.client
    world_a = FakeWorld(current_version=1, versions=[1], approval_required=True)
    world_b = FakeWorld(current_version=1, versions=[1])
    build_a, build_b = on_build(queue, "A", tmp_path), on_build(queue, "B", tmp_path)
    async with workers(client, queue, [ReleaseWorkflow], world_a.activities(),
                       **build_a):
        waiting = await client.start_workflow(ReleaseWorkflow.run, release("shop"),
                                              id="release:shop:prod@local", task_queue=queue)
        await awaiting_approval(waiting)
        async with workers(client, queue, [IncompatibleReleaseWorkflow], world_b.activities(),
                           **build_b):
            # B polls, but A stays current (SLIPWAY_WORKER_PROMOTE=first) until promoted.
            async with asyncio.timeout(30):
                while "B" not in (listed := await cli("worker versions")):
                    await asyncio.sleep(0.2)
            assert "current A" in listed
            unknown = await asyncio.to_thread(run, "worker promote C")
            assert unknown.exit_code == 1
            assert ("build 'C' is not a version of worker deployment" in unknown.output
                    and "nothing was changed" in unknown.output)
            assert "current A" in await cli("worker versions")
            assert "build B is current" in await cli("worker promote B")
            listed = await cli("worker versions")
            assert "current B" in listed
            print(f"\n$ slipway worker versions  # after `worker promote B`\n{listed}")
            assert "draining" in row(listed, "A") and "release:shop:prod@local" in listed, listed
            assert "current" in row(listed, "B"), listed

            await waiting.execute_update(ReleaseWorkflow.approve, signed(waiting, "lead"))
            outcome = await asyncio.wait_for(waiting.result(), timeout=60)
            assert outcome.state == ReleaseState.SUCCEEDED
            assert await task_builds(waiting) == {"A"}

            fresh = await client.start_workflow(ReleaseWorkflow.run, release("cart"),
                                                id="release:cart:prod@local", task_queue=queue)
            assert (await asyncio.wait_for(fresh.result(), timeout=60)).state == \
                ReleaseState.SUCCEEDED
            assert await task_builds(fresh) == {"B"}
            events = [event.event_type async for event in fresh.fetch_history_events()]
            assert EventType.EVENT_TYPE_TIMER_STARTED in events  # B's own code ran it
            # A drains: no pinned run is left on it, and the server says so.
            async with asyncio.timeout(60):
                while "drained" not in row(await cli("worker versions"), "A"):
                    await asyncio.sleep(1)
        # A's workers are stopped (the block above ended them); B serves on.
    async with workers(client, queue, [IncompatibleReleaseWorkflow], world_b.activities(),
                       **build_b):
        again = await client.start_workflow(ReleaseWorkflow.run, release("shop"),
                                            id="release:shop:prod@local", task_queue=queue)
        assert (await asyncio.wait_for(again.result(), timeout=60)).state == \
            ReleaseState.SUCCEEDED


async def test_control_without_versioning_the_waiting_release_fails_on_build_b(
    server: WorkflowEnvironment, queue: str, tmp_path: Path,
) -> None:
    client = server.client
    world = FakeWorld(current_version=1, versions=[1], approval_required=True)
    async with workers(client, queue, [UnversionedReleaseWorkflow], world.activities()):
        waiting = await client.start_workflow(ReleaseWorkflow.run, release("shop"),
                                              id="release:shop:prod@local", task_queue=queue)
        await awaiting_approval(waiting)
    # A's worker replaced by B's (a plain deploy): the next task of the run replays on B.
    async with workers(client, queue, [UnversionedIncompatibleReleaseWorkflow],
                       world.activities()):
        with pytest.raises((TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError)):
            await asyncio.wait_for(
                waiting.execute_update(ReleaseWorkflow.approve, signed(waiting, "lead")), 10)
        causes = [event.workflow_task_failed_event_attributes.cause
                  async for event in waiting.fetch_history_events()
                  if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        assert WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR in causes
        await waiting.terminate("control of the upgrade drill")
