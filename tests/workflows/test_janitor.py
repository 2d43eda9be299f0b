"""JanitorWorkflow on the time-skipping server with its real activities: a dead lane's
namespace on a real Kubernetes control plane (tests/support/kube_server.py) is deleted, a
live lane's is kept, and catalogue rows of lanes whose workflow is gone are reported once and
marked lost."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlmodel import select
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.janitor import JanitorActivities
from catalogue.lanes import record_lane
from catalogue.store import Store
from catalogue.tables import LaneRecord
from integrations.haproxy.router import HaproxyRouter
from integrations.kubernetes.runtime import KubernetesRuntime
from lanes.janitor import LaneJanitor
from lanes.kubernetes_target import KubernetesLaneTarget
from schemas.lanes import LaneRecordInput, LaneSpec, LaneStage, lane_workflow_id
from schemas.models import NotifyInput
from schemas.settings import Cluster
from tests.support.kube_fixtures import KubeEnv
from tests.workflows.lane_fakes import LaneWorld
from workflows.janitor import JanitorWorkflow
from workflows.swimlane import SwimlaneWorkflow


def namespaces(kube: KubeEnv) -> set[str]:
    return {item["metadata"]["name"] for item in kube.server.get("/api/v1/namespaces")["items"]
            if item["status"]["phase"] == "Active"}


async def test_the_janitor_removes_an_orphan_and_reports_a_lost_lane(
        fresh_env: WorkflowEnvironment, lane_kube: KubeEnv, tmp_path: Path) -> None:
    kube = lane_kube
    env = fresh_env  # a private server: the live lane below is left running until the end
    live, dead = f"live-{uuid.uuid4().hex[:6]}", f"dead-{uuid.uuid4().hex[:6]}"
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    runtime = KubernetesRuntime.from_cluster(
        Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig)), name="k8s")
    target = KubernetesLaneTarget(runtime, namespace_timeout_seconds=5)
    for name in (live, dead):  # both lanes made their namespace; only one still has a workflow
        await asyncio.to_thread(target.create_namespace, name)
    record_lane(store, LaneRecordInput(name=dead, workflow_id=lane_workflow_id(dead),
                                       apps=["shop"], stage=LaneStage.ACTIVE))
    notices: list[str] = []

    @activity.defn(name="notify")
    async def notify(data: NotifyInput) -> None:
        notices.append(f"{data.title}: {data.text}")

    queue = f"janitor-{uuid.uuid4()}"
    world = LaneWorld()
    with ThreadPoolExecutor(max_workers=4) as executor:
        janitor = JanitorActivities(
            LaneJanitor([], HaproxyRouter(tmp_path / "lb"), [target]), store, env.client,
            asyncio.get_running_loop())
        lane_activities = [a for a in world.activities() if a.__name__ != "notify"]
        async with Worker(env.client, task_queue=queue,
                          workflows=[JanitorWorkflow, SwimlaneWorkflow],
                          activities=[janitor.sweep_lane_orphans, janitor.report_lost_lanes,
                                      notify, *lane_activities],
                          activity_executor=executor):
            lane = await env.client.start_workflow(
                SwimlaneWorkflow.run, LaneSpec(name=live, apps=["shop"]),
                id=lane_workflow_id(live), task_queue=queue)
            first = await env.client.execute_workflow(
                JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=queue)
            report = await env.client.execute_workflow(
                JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=queue)
            again = await env.client.execute_workflow(
                JanitorWorkflow.run, id=f"janitor-{uuid.uuid4()}", task_queue=queue)
            await lane.terminate("test done")

    # A lane gone on one sweep is a suspect; the second sweep removes it.
    assert first.removed == {} and first.lost == [dead]
    assert report.removed == {dead: [f"namespace {dead}@k8s"]}
    assert report.lost == []
    assert dead not in namespaces(kube)  # the sweep waited until it was gone
    assert {live, kube.namespace} <= namespaces(kube)
    with store.session() as session:
        stages = {row.name: row.stage for row in session.exec(select(LaneRecord))}
    assert stages == {dead: "lost"}  # (the live lane records through the fakes, not here)
    assert any(dead in notice and "lost their workflow" in notice for notice in notices)
    # The second run finds nothing: removed once, reported once.
    assert again.removed == {} and again.lost == []
