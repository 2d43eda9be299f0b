"""The janitor on real dockerd + the Temporal dev server; its schedule is applied idempotently."""

from __future__ import annotations

import uuid
from datetime import timedelta

import docker
import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.lanes import record_lane
from catalogue.store import Store
from catalogue.tables import LaneRecord
from schemas.lanes import LaneRecordInput, LaneSpec, LaneStage, lane_workflow_id
from schemas.settings import Settings
from starter.service.schedules import apply_schedules
from workflows.janitor import JANITOR_SCHEDULE_ID, JanitorWorkflow
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration


def lane_container(client: docker.DockerClient, settings: Settings, lane: str,
                   stack: str = "") -> str:
    container = client.containers.run(
        settings.base_image, ["sleep", "600"], detach=True,
        labels={"slipway.lane": lane, "slipway.env": f"shop-lane-{lane}",
                "slipway.app": "shop", "slipway.version": "1",
                "slipway.stack": stack or settings.stack_label()})
    return str(container.id)


def lane_row(store: Store, lane: str, stage: LaneStage) -> None:
    record_lane(store, LaneRecordInput(name=lane, workflow_id=lane_workflow_id(lane),
                                       apps=["shop"], stage=stage))


def stage_of(store: Store, lane: str) -> str:
    with store.session() as session:
        return session.exec(select(LaneRecord).where(LaneRecord.name == lane)).one().stage


async def test_janitor_removes_orphans_and_spares_live_lanes(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    docker_client: docker.DockerClient,
) -> None:
    orphan, live = f"gone-{uuid.uuid4().hex[:6]}", f"live-{uuid.uuid4().hex[:6]}"
    finished = f"done-{uuid.uuid4().hex[:6]}"
    lane = await temporal.client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=live, apps=[]), id=lane_workflow_id(live),
        task_queue=settings.task_queue)
    orphan_id = lane_container(docker_client, settings, orphan)
    live_id = lane_container(docker_client, settings, live)
    # Another Slipway stack's lane on the same engine: its workflow is not ours to ask about.
    neighbour_id = lane_container(docker_client, settings, f"theirs-{uuid.uuid4().hex[:6]}",
                                  stack="another-stack")
    # The catalogue lists the orphan as active (its workflow was terminated, say) and a
    # deleted lane as deleted: only the first is lost.
    lane_row(store, orphan, LaneStage.ACTIVE)
    lane_row(store, finished, LaneStage.DELETED)
    try:
        first = await temporal.client.execute_workflow(
            JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=settings.task_queue)
        # Gone once is only a suspect: nothing is deleted on one sighting.
        assert first.removed == {}
        assert docker_client.containers.list(all=True, filters={"id": orphan_id})
        assert first.lost == [orphan]
        assert (stage_of(store, orphan), stage_of(store, finished)) == ("lost", "deleted")
        report = await temporal.client.execute_workflow(
            JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=settings.task_queue)
        assert report.removed == {orphan: [f"shop-lane-{orphan}"]}
        assert not docker_client.containers.list(all=True, filters={"id": orphan_id})
        assert docker_client.containers.list(all=True, filters={"id": live_id})
        assert docker_client.containers.list(all=True, filters={"id": neighbour_id})
        assert stage_of(store, live) in ("creating", "active")  # written by its workflow
        # Reported once, removed once: the next run finds nothing new.
        again = await temporal.client.execute_workflow(
            JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=settings.task_queue)
        assert again.lost == [] and again.removed == {}
    finally:
        await lane.terminate("test done")
        for container in docker_client.containers.list(
                all=True, filters={"label": "slipway.lane"}):
            if (container.labels["slipway.lane"] in (orphan, live)
                    or container.id == neighbour_id):
                container.remove(force=True)


async def test_schedules_apply_creates_then_updates(temporal: WorkflowEnvironment,
                                                    settings: Settings) -> None:
    client = temporal.client
    assert await apply_schedules(client, settings, timedelta(hours=1)) == "created"
    assert await apply_schedules(client, settings, timedelta(minutes=30)) == "updated"
    description = await client.get_schedule_handle(JANITOR_SCHEDULE_ID).describe()
    assert description.schedule.spec.intervals[0].every == timedelta(minutes=30)
    await client.get_schedule_handle(JANITOR_SCHEDULE_ID).delete()
