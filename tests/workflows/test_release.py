"""ReleaseWorkflow orchestration with fake activities on the time-skipping server."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from schemas.enums import ReleaseState
from schemas.models import (
    ImageSpec,
    ReleaseRequest,
)
from tests.workflows.fakes import FakeWorld, run_release


async def test_first_release_builds_and_writes_baseline_1(env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    _, outcome = await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert outcome.state == ReleaseState.SUCCEEDED
    assert outcome.baseline_version == 1
    assert world.calls == [
        "prepare", "build v1", "record_build", "frontend 18080",
        "start v1 sha256:new x2", "ready v1", "route v1-0,v1-1",
    ]
    assert world.finished[-1].state == ReleaseState.SUCCEEDED
    assert world.finished[-1].image == ImageSpec(image="slipway/shop:v1", digest="sha256:new")


async def test_recreate_drains_and_stops_old_before_starting_new(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1])
    status, outcome = await run_release(
        env, world, ReleaseRequest(app="shop", env="prod@local", image="127.0.0.1:5000/shop:2")
    )
    assert outcome.baseline_version == 2
    assert world.calls[1:] == [
        "resolve 127.0.0.1:5000/shop:2", "frontend 18080", "drain v1", "stop v1",
        "start v2 127.0.0.1:5000/shop@sha256:given x2", "ready v2", "route v2-0,v2-1",
        "remove v1",
    ]
    assert status.stage == "succeeded"
    assert [e.message.split(":")[0] for e in status.events][:2] == ["resolving", "draining"]


async def test_unhealthy_new_version_is_rolled_back_to_the_baseline(
    env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2)
    with pytest.raises(WorkflowFailureError) as failure:
        await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert "release rolled_back: v2-0 exited: boom" in str(failure.value.cause)
    undo = world.calls[world.calls.index("start v2 sha256:new x2") + 1:]
    # Newest first: v2 out of rotation and removed, then v1 started from its digest again.
    assert undo == ["unroute v2", "remove v2", "start v1 sha256:v1 x2", "ready v1",
                    "route v1-0,v1-1"]
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "boom" in world.finished[-1].error


async def test_cancelled_release_undoes_its_steps(fresh_env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], block_ready_for=2)
    with pytest.raises(WorkflowFailureError):
        await run_release(fresh_env, world, ReleaseRequest(app="shop", env="prod@local"),
                          cancel_when_blocked=True)
    assert world.calls[-3:] == ["start v1 sha256:v1 x2", "ready v1", "route v1-0,v1-1"]
    assert "remove v2" in world.calls
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert world.finished[-1].error == "cancelled"


async def test_failed_undo_ends_failed_with_an_alert(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], fail_ready_for=2, fail_undo=True)
    with pytest.raises(WorkflowFailureError) as failure:
        await run_release(env, world, ReleaseRequest(app="shop", env="prod@local"))
    assert "release failed" in str(failure.value.cause)
    assert world.finished[-1].state == ReleaseState.FAILED
    assert any(title.startswith("ALERT: ") for title in world.notices)
