"""SwimlaneWorkflow on the time-skipping server with recorded fake resource activities,
and lane name normalisation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import (
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from schemas.lanes import (
    DeleteInput,
    LaneActivityInput,
    LaneAppsInput,
    LanePushInput,
    LanePushResult,
    LaneSpec,
    LaneStage,
    LaneState,
    LaneStatus,
    LedgerEntry,
    RenewInput,
    ResourceKind,
    lane_workflow_id,
    normalise_lane_name,
)
from tests.conftest import _start_env
from tests.support.workers import workers
from tests.workflows.lane_fakes import KINDS, LaneWorld
from workflows.swimlane import SwimlaneWorkflow

DAY = timedelta(days=1)


@pytest_asyncio.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for this module alone: a workflow that an earlier module leaves
    with an activity outstanding stops the shared server from skipping time."""
    environment = await _start_env()
    try:
        yield environment
    finally:
        await environment.shutdown()


def created_for(lane: str, apps: list[str]) -> list[str]:
    return [f"namespace {lane}", f"messages {lane}"] + [f"{kind} {app}" for app in apps
                                                        for kind in KINDS]


def lane_name() -> str:
    return f"lane-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def lane(env: WorkflowEnvironment, world: LaneWorld,
               start: LaneSpec | LaneState) -> AsyncIterator[WorkflowHandle[Any, Any]]:
    """A worker plus a started lane workflow, for as long as the test needs them."""
    queue = f"q-{uuid.uuid4()}"
    name = start.name if isinstance(start, LaneSpec) else start.spec.name
    async with workers(env.client, queue, [SwimlaneWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            SwimlaneWorkflow.run, start, id=lane_workflow_id(name), task_queue=queue)
        try:
            yield handle
        finally:
            # Never leave an activity pending or running (a delete update returns before the
            # closing notice): the shared test server would stop skipping time.
            world.release.set()
            with contextlib.suppress(WorkflowFailureError):
                await handle.result()


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Any,
                   seconds: float = 30) -> LaneStatus:
    """Poll the status query until ``predicate(status)`` holds (real time, bounded)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status: LaneStatus = await handle.query(SwimlaneWorkflow.status)
        if predicate(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status never matched: {status}")
        await asyncio.sleep(0.05)


def stage_is(stage: LaneStage) -> Any:
    return lambda status: status.stage == stage


# -- TTL ------------------------------------------------------------------------------------


async def test_idle_lane_gets_a_notice_at_day_6_and_is_deleted_at_day_7(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    renew_url = f"http://slipway.test/api/lanes/{name}/renew"
    async with lane(env, world, LaneSpec(name=name, apps=["shop"], ticket="PAY-7",
                                         renew_url=renew_url)) as handle:
        await wait_for(handle, stage_is(LaneStage.ACTIVE))
        assert world.created == created_for(name, ["shop"])
        await env.sleep(6 * DAY - timedelta(hours=1))
        status = await handle.query(SwimlaneWorkflow.status)
        assert status.stage == LaneStage.ACTIVE and not world.notices
        await env.sleep(timedelta(hours=2))
        status = await wait_for(handle, stage_is(LaneStage.PENDING_DELETION))
        assert status.notice_sent
        assert len(world.notices) == 1
        assert f"`slipway lane renew {name}` or POST {renew_url}" in world.notices[0]
        assert "PAY-7" in world.notices[0]
        await env.sleep(DAY - timedelta(hours=2))  # day 6.95: still there
        assert (await handle.query(SwimlaneWorkflow.status)).stage == LaneStage.PENDING_DELETION
        assert not world.deleted
        await env.sleep(timedelta(hours=2))  # day 7.05
        final: LaneStatus = await handle.result()
        assert final.stage == LaneStage.DELETED and final.ledger == []
        assert world.deleted == list(reversed(created_for(name, ["shop"])))
        assert world.notices[-1].startswith(f"lane {name} deleted")
        # The catalogue row followed every stage, with the ticket and the expiry.
        assert [record.stage for record in world.records] == [
            "creating", "active", "pending_deletion", "deleted"]
        assert {record.ticket for record in world.records} == {"PAY-7"}
        assert world.records[2].expires_at == status.expires_at


async def test_renew_on_day_6_5_keeps_the_lane_alive_at_day_8(env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["shop"])) as handle:
        await wait_for(handle, stage_is(LaneStage.ACTIVE))
        await env.sleep(6.5 * DAY)
        await wait_for(handle, stage_is(LaneStage.PENDING_DELETION))
        renewed: LaneStatus = await handle.execute_update(SwimlaneWorkflow.renew,
                                                          RenewInput(user="ana"))
        assert renewed.stage == LaneStage.ACTIVE and not renewed.notice_sent
        assert renewed.last_activity is not None
        assert renewed.expires_at - renewed.last_activity == 7 * DAY
        await env.sleep(1.5 * DAY)  # day 8
        status = await handle.query(SwimlaneWorkflow.status)
        assert status.stage == LaneStage.ACTIVE
        assert world.deleted == [] and len(world.notices) == 1
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"))


async def test_a_push_deploy_resets_the_idle_clock(env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["shop", "cart"])) as handle:
        await wait_for(handle, stage_is(LaneStage.ACTIVE))
        await env.sleep(5 * DAY)
        pushed: LanePushResult = await handle.execute_update(
            SwimlaneWorkflow.push, LanePushInput(app="shop", source="git@gl:s/shop.git",
                                                 sha="c0ffee1234567890", user="dev"))
        assert world.builds == [f"shop c0ffee1234567890 {name}-c0ffee123456"]
        assert world.build_jobs == [f"{name}/shop"]  # the lane's own Jenkins job
        image = "reg.local/shop@sha256:c0ffee1234567890"  # by digest, never by tag
        assert pushed.image == image and world.deploys == [f"shop {image} (was v1)"]
        status: LaneStatus = await handle.query(SwimlaneWorkflow.status)
        deployment = next(e for e in status.ledger
                          if e.kind == ResourceKind.DEPLOYMENT and e.app == "shop")
        assert deployment.detail["version"] == 2 and deployment.detail["image"] == image
        await env.sleep(2 * DAY)  # day 7: six idle days have not passed since the push
        status = await handle.query(SwimlaneWorkflow.status)
        assert status.stage == LaneStage.ACTIVE and not world.notices
        # A second push swaps the version the first one deployed, not the QA one.
        await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app="shop", source="git@gl:s/shop.git", sha="beef", user="dev"))
        assert world.deploys[-1].endswith("(was v2)")
        pushed_at = (await handle.query(SwimlaneWorkflow.status)).last_activity
        await env.sleep(6 * DAY + timedelta(hours=1))  # six days after the last push
        status = await wait_for(handle, stage_is(LaneStage.PENDING_DELETION))
        assert status.last_activity == pushed_at
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"))


async def test_a_failed_push_changes_nothing_and_bad_pushes_are_refused(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(fail_on="build shop"), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["shop"])) as handle:
        before = await wait_for(handle, stage_is(LaneStage.ACTIVE))
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
                app="shop", source="git@gl:s/shop.git", sha="bad", user="dev"))
        assert "does not compile" in str(failed.value.cause)
        after: LaneStatus = await handle.query(SwimlaneWorkflow.status)
        assert after.ledger == before.ledger and world.deploys == []
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
                app="cart", source="git@gl:s/cart.git", sha="abc", user="dev"))
        assert "cart is not in lane" in str(refused.value.cause)
        # The activity_seen update still renews for other kinds of use.
        seen: LaneStatus = await handle.execute_update(
            SwimlaneWorkflow.activity_seen, LaneActivityInput(source="qa", detail="smoke test"))
        assert seen.last_activity and before.last_activity
        assert seen.last_activity > before.last_activity
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"))


async def test_a_carried_state_resumes_without_creating_anything(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    now = await env.get_current_time()
    ledger = [LedgerEntry(kind=ResourceKind.NAMESPACE, key=name),
              LedgerEntry(kind=ResourceKind.BRANCH, key=f"feature/{name}", app="shop")]
    carried = LaneState(spec=LaneSpec(name=name, apps=["shop"], ttl_seconds=3600,
                                      grace_seconds=600),
                        ledger=ledger, stage=LaneStage.ACTIVE, last_activity=now,
                        expires_at=now + timedelta(seconds=4200))
    async with lane(env, world, carried) as handle:
        final: LaneStatus = await handle.result()
    assert world.created == []
    assert world.deleted == ["branch shop", f"namespace {name}"]
    assert final.stage == LaneStage.DELETED and len(world.notices) == 2


# -- delete ---------------------------------------------------------------------------------


async def test_delete_twice_is_safe(env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["a", "b"])) as handle:
        await wait_for(handle, stage_is(LaneStage.ACTIVE))
        first, second = await asyncio.gather(
            handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana")),
            handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="bo")))
        expected = list(reversed(created_for(name, ["a", "b"])))
        assert world.deleted == expected  # each resource removed exactly once
        assert [f"{e.kind} {e.app or e.key}" for e in first.removed] == expected
        assert second.removed == first.removed
        final: LaneStatus = await handle.result()
        assert final.stage == LaneStage.DELETED
        # Once deleted the workflow is closed: the server refuses a third delete (the CLI
        # reports the lane as gone) and nothing runs again.
        with pytest.raises(RPCError):
            await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="cy"))
        assert world.deleted == expected


async def test_delete_while_create_runs_waits_for_the_step_then_tears_down(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(block_on="config a"), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["a", "b"])) as handle:
        await asyncio.wait_for(world.blocked.wait(), timeout=30)
        deleting = await handle.start_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"),
                                             wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await asyncio.sleep(0.3)
        assert not world.deleted  # it waits for the create step in flight
        world.release.set()
        result = await asyncio.wait_for(deleting.result(), timeout=30)
        # The step in flight finished and was recorded; nothing after it was started.
        assert world.created == [f"namespace {name}", f"messages {name}", "branch a",
                                 "ci_job a", "config a"]
        assert world.deleted == list(reversed(world.created))
        assert len(result.removed) == 5
        final: LaneStatus = await handle.result()
        assert final.stage == LaneStage.DELETED and final.ledger == []


async def test_a_failure_halfway_through_create_tears_down_exactly_what_was_created(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(fail_on="dns b"), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["a", "b"])) as handle:
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
        status = await handle.query(SwimlaneWorkflow.status)
    assert "dns" in str(failed.value.cause) and "refused" in str(failed.value.cause)
    assert world.created == created_for(name, ["a"]) + ["branch b", "ci_job b", "config b"]
    assert world.deleted == list(reversed(world.created))
    assert status.stage == LaneStage.FAILED and status.ledger == []
    assert "could not be created" in world.notices[-1]


# -- update ---------------------------------------------------------------------------------


async def test_update_creates_and_tears_down_only_the_difference(
        env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["a", "b"])) as handle:
        await wait_for(handle, stage_is(LaneStage.ACTIVE))
        world.created.clear()
        status: LaneStatus = await handle.execute_update(
            SwimlaneWorkflow.update, LaneAppsInput(add=["c"], remove=["a"], user="ana"))
        assert world.created == [f"{kind} c" for kind in KINDS]
        assert world.deleted == [f"{kind} a" for kind in reversed(KINDS)]
        assert status.apps == ["b", "c"]
        assert {entry.app for entry in status.ledger} == {"", "b", "c"}
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(SwimlaneWorkflow.update,
                                        LaneAppsInput(add=["b"], user="ana"))
        assert "already in lane" in str(refused.value.cause)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(SwimlaneWorkflow.update,
                                        LaneAppsInput(remove=["b", "c"], user="ana"))
        assert "delete the lane instead" in str(refused.value.cause)
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"))
        assert world.deleted[6:] == list(reversed(
            [f"namespace {name}", f"messages {name}"]
            + [f"{kind} {app}" for app in ("b", "c") for kind in KINDS]))


async def test_renew_is_refused_while_deleting(env: WorkflowEnvironment) -> None:
    world, name = LaneWorld(block_on="ci_job a"), lane_name()
    async with lane(env, world, LaneSpec(name=name, apps=["a"])) as handle:
        await asyncio.wait_for(world.blocked.wait(), timeout=30)
        deleting = await handle.start_update(SwimlaneWorkflow.delete, DeleteInput(user="ana"),
                                             wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(SwimlaneWorkflow.renew, RenewInput(user="bo"))
        assert "cannot renew" in str(refused.value.cause)
        world.release.set()
        await asyncio.wait_for(deleting.result(), timeout=30)


# -- names ----------------------------------------------------------------------------------


def test_names_are_normalised_to_a_dns_label() -> None:
    assert normalise_lane_name("Feature/Pay_2") == "feature-pay-2"
    assert normalise_lane_name("  --Pay  Day!!-- ") == "pay-day"
    assert lane_workflow_id("Feature/Pay_2") == "swimlane:feature-pay-2"


def test_an_empty_name_is_refused() -> None:
    for text in ("", "___", "  -/- "):
        with pytest.raises(ValueError, match="is empty after normalising"):
            normalise_lane_name(text)


def test_a_long_name_is_cut_to_63_characters() -> None:
    name = normalise_lane_name("a" * 70)
    assert name == "a" * 63
    # A cut that ends on a separator drops it: a label may not end with "-".
    assert normalise_lane_name("b" * 62 + "_c" + "d" * 10) == "b" * 62


def test_the_carried_state_round_trips_as_json() -> None:
    # The carried state crosses continue-as-new as JSON: datetimes must round-trip.
    at = datetime(2026, 1, 1)
    state = LaneState(spec=LaneSpec(name="x", apps=[]), last_activity=at, expires_at=at)
    assert LaneState.model_validate_json(state.model_dump_json()) == state


async def test_a_lane_started_with_an_out_of_range_ttl_fails_instead_of_retrying(
        env: WorkflowEnvironment) -> None:
    """Started past the CLI (raw JSON, another client), a TTL of 99999999 days must fail the
    workflow visibly, not fail its workflow task forever."""
    name = lane_name()
    world = LaneWorld()
    queue = f"q-{uuid.uuid4()}"
    raw = {"name": name, "apps": ["shop"], "ttl_seconds": 99999999 * 86400,
           "grace_seconds": 86400}
    async with workers(env.client, queue, [SwimlaneWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            "SwimlaneWorkflow", raw, id=lane_workflow_id(name), task_queue=queue)
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), timeout=30)
    assert "lane TTL" in str(failed.value.cause) and "out of range" in str(failed.value.cause)
    assert world.created == []
