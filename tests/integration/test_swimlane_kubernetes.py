"""A lane on a Kubernetes lane cluster, through the whole SwimlaneWorkflow: the Temporal dev
server, a worker built as worker.py builds it, and the kmock API emulator with namespaces.

The app's QA baseline runs in ``shop-test``; the lane gets a namespace of its own with the app
and its Service in it, a push swaps in a new version there, and deleting the lane deletes the
namespace — never ``shop-test``.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from catalogue.store import Store
from schemas.lanes import (
    DeleteInput,
    LanePushInput,
    LaneSpec,
    LaneStage,
    ResourceKind,
    lane_workflow_id,
)
from schemas.models import ReleaseRequest
from schemas.settings import Cluster, Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_release_docker import SAMPLE
from tests.support.hermetic import lb_port_start
from tests.support.kube import DEPLOYMENTS, SERVICES
from tests.support.kube_lanes import LaneCluster, lane_cluster
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

APP = "shop"
QA = "shop-test"
LANE = "feat-k8s"


@pytest_asyncio.fixture
async def kube(tmp_path: Path) -> AsyncIterator[LaneCluster]:
    async with lane_cluster(tmp_path, {QA}) as cluster:
        yield cluster


@pytest.fixture
def k8s_settings(tmp_path: Path, kube: LaneCluster,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """One Kubernetes cluster, ``k8s``: releases and lanes both run there."""
    state = Path("/tmp") / f"slipway-k8s-lane-{tmp_path.name}"
    values = Settings(
        state_dir=state, database_url=f"sqlite:///{tmp_path / 'slipway.db'}",
        clusters={"k8s": Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig))},
        default_cluster="k8s", task_queue=f"k8s-lane-{tmp_path.name}",
        lb_port_start=lb_port_start(), drain_timeout_seconds=0.3, progress_deadline_seconds=20)
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    monkeypatch.setenv("SLIPWAY_LANE_CLUSTER", "k8s")
    monkeypatch.setenv("SLIPWAY_LANE_DEADLINE_SECONDS", "20")
    yield values
    shutil.rmtree(state, ignore_errors=True)


@pytest_asyncio.fixture
async def k8s_worker(temporal: WorkflowEnvironment, k8s_settings: Settings) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds:
        async with (slipway_worker.make_worker(temporal.client, k8s_settings, executor),
                    slipway_worker.make_build_worker(temporal.client, k8s_settings, builds)):
            yield


async def release_to_test(temporal: WorkflowEnvironment, settings: Settings,
                          store: Store) -> None:
    register_app(store, APP, category="in-house", tier="non-core", owners=["qa"],
                 approvers=[], source=str(SAMPLE), description="", actor="qa")
    mark_ready(store, APP, "qa")
    add_env(store, APP, "test", cluster="k8s", replicas=1, cpu="", memory="64Mi",
            ports=[8080], env_vars={"MODE": "qa"}, runtime=None, namespace=QA,
            health_path="/healthz", settings=settings, actor="qa", strategy="recreate",
            approval="none")
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="test", image="reg.test/shop:qa", requested_by="qa"))
    started = await start_release(temporal.client, settings, request, summary)
    await follow(started.handle, lambda _status: None)


def env_of(deployment: dict[str, object]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    return {item["name"]: item["value"] for item in container["env"]}


async def test_a_lane_gets_its_own_namespace_and_gives_it_back(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        kube: LaneCluster) -> None:
    store = Store(k8s_settings.resolved_database_url())
    await release_to_test(temporal, k8s_settings, store)
    handle = await temporal.client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=LANE, apps=[APP], requested_by="dev"),
        id=lane_workflow_id(LANE), task_queue=k8s_settings.task_queue)
    try:
        status = await handle.query(SwimlaneWorkflow.status)
        for _ in range(600):  # at most a minute
            if status.stage != LaneStage.CREATING:
                break
            await asyncio.sleep(0.1)
            status = await handle.query(SwimlaneWorkflow.status)
        assert status.stage == LaneStage.ACTIVE, status
        namespace = next(e for e in status.ledger if e.kind == ResourceKind.NAMESPACE)
        assert namespace.detail == {"runtime": "kubernetes", "cluster": "k8s",
                                    "namespace": LANE, "created": True}
        assert kube.emulator.namespace_objects[LANE]["metadata"]["labels"]["slipway.lane"] == \
            LANE
        deployment = next(e for e in status.ledger if e.kind == ResourceKind.DEPLOYMENT)
        assert deployment.detail["url"] == f"http://{APP}.{LANE}.svc:8080/"
        assert deployment.detail["from"] == "baseline 1 of test@k8s"
        # The QA baseline's image, run the QA way, dyed with the lane.
        [lane_app] = kube.emulator.live(DEPLOYMENTS, LANE).values()
        assert lane_app["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "reg.test/shop:qa"
        variables = env_of(lane_app)
        assert (variables["MODE"], variables["SLIPWAY_LANE"]) == ("qa", LANE)
        assert list(kube.emulator.live(SERVICES, LANE)) == [APP]

        # A push: built from the sample (worktree) and swapped in; v1 goes.
        pushed = await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app=APP, source=str(SAMPLE), sha="", user="dev"))
        names = sorted(d["metadata"]["name"] for d in kube.emulator.live(DEPLOYMENTS, LANE)
                       .values())
        assert names == [f"{APP}-v2"]
        assert pushed.image.startswith("sha256:")  # a local build, by its image id

        result = await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev"))
        assert [e.kind for e in result.removed][-1] == ResourceKind.NAMESPACE
        assert LANE not in kube.emulator.namespace_objects
        assert QA in kube.emulator.namespace_objects  # the QA namespace is never the lane's
        assert kube.emulator.deployment(QA, f"{APP}-v1") is not None
    finally:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test cleanup")
