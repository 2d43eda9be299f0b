"""A lane on a Kubernetes lane cluster, through the whole SwimlaneWorkflow: the Temporal dev
server, a worker built as worker.py builds it, and a real control plane
(tests/support/kube_server.py) where the worker acts as the service account that
deploy/kubernetes/rbac.yaml and rbac-lanes.yaml grant.

The app's QA baseline runs in its test namespace; the lane gets a namespace of its own with
the app and its Service in it, a push swaps in a new version there, and deleting the lane
deletes the namespace — never the QA one.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
from tests.support.kube_fixtures import KubeEnv, unique
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

APP = "shop"


@pytest.fixture
def kube(lane_kube: KubeEnv) -> KubeEnv:
    return lane_kube


@pytest.fixture
def k8s_settings(tmp_path: Path, kube: KubeEnv,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """One Kubernetes cluster, ``k8s``: releases and lanes both run there."""
    state = Path("/tmp") / f"slipway-k8s-lane-{tmp_path.name}"
    values = Settings(
        state_dir=state, database_url=f"sqlite:///{tmp_path / 'slipway.db'}",
        clusters={"k8s": Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig))},
        default_cluster="k8s", task_queue=f"k8s-lane-{tmp_path.name}",
        lb_port_start=lb_port_start(), drain_timeout_seconds=0.3, progress_deadline_seconds=60)
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    monkeypatch.setenv("SLIPWAY_LANE_CLUSTER", "k8s")
    monkeypatch.setenv("SLIPWAY_LANE_DEADLINE_SECONDS", "60")
    yield values
    shutil.rmtree(state, ignore_errors=True)


@pytest_asyncio.fixture
async def k8s_worker(temporal: WorkflowEnvironment, k8s_settings: Settings) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds:
        async with (slipway_worker.make_worker(temporal.client, k8s_settings, executor),
                    slipway_worker.make_build_worker(temporal.client, k8s_settings, builds)):
            yield


async def release_to_test(temporal: WorkflowEnvironment, settings: Settings,
                          store: Store, qa: str) -> None:
    register_app(store, APP, category="in-house", tier="non-core", owners=["qa"],
                 approvers=[], source=str(SAMPLE), description="", actor="qa")
    mark_ready(store, APP, "qa")
    add_env(store, APP, "test", cluster="k8s", replicas=1, cpu="", memory="64Mi",
            ports=[8080], env_vars={"MODE": "qa"}, runtime=None, namespace=qa,
            health_path="/healthz", settings=settings, actor="qa", strategy="recreate",
            approval="none")
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="test", image="reg.test/shop:qa", requested_by="qa"))
    started = await start_release(temporal.client, settings, request, summary)
    await follow(started.handle, lambda _status: None)


def env_of(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item["value"] for item in container["env"]}


def namespace(kube: KubeEnv, name: str) -> dict[str, Any] | None:
    return kube.server.find(f"/api/v1/namespaces/{name}")


def deployments(kube: KubeEnv, ns: str) -> list[dict[str, Any]]:
    return list(kube.server.get(f"/apis/apps/v1/namespaces/{ns}/deployments")["items"])


async def test_a_lane_gets_its_own_namespace_and_gives_it_back(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        kube: KubeEnv) -> None:
    store = Store(k8s_settings.resolved_database_url())
    qa, lane = kube.namespace, unique("feat-k8s")
    await release_to_test(temporal, k8s_settings, store, qa)
    handle = await temporal.client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=lane, apps=[APP], requested_by="dev"),
        id=lane_workflow_id(lane), task_queue=k8s_settings.task_queue)
    try:
        status = await handle.query(SwimlaneWorkflow.status)
        for _ in range(600):  # at most a minute
            if status.stage != LaneStage.CREATING:
                break
            await asyncio.sleep(0.1)
            status = await handle.query(SwimlaneWorkflow.status)
        assert status.stage == LaneStage.ACTIVE, status
        entry = next(e for e in status.ledger if e.kind == ResourceKind.NAMESPACE)
        assert entry.detail == {"runtime": "kubernetes", "cluster": "k8s",
                                    "namespace": lane, "created": True}
        created = namespace(kube, lane)
        assert created is not None and created["metadata"]["labels"]["slipway.lane"] == lane
        deployment = next(e for e in status.ledger if e.kind == ResourceKind.DEPLOYMENT)
        assert deployment.detail["url"] == f"http://{APP}.{lane}.svc:8080/"
        assert deployment.detail["from"] == "baseline 1 of test@k8s"
        # The QA baseline's image, run the QA way, dyed with the lane.
        [lane_app] = deployments(kube, lane)
        assert lane_app["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "reg.test/shop:qa"
        variables = env_of(lane_app)
        assert (variables["MODE"], variables["SLIPWAY_LANE"]) == ("qa", lane)
        services = kube.server.get(f"/api/v1/namespaces/{lane}/services")["items"]
        assert [s["metadata"]["name"] for s in services] == [APP]

        # A push: built from the sample (worktree) and swapped in; v1 goes.
        pushed = await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app=APP, source=str(SAMPLE), sha="", user="dev"))
        names = sorted(d["metadata"]["name"] for d in deployments(kube, lane))
        assert names == [f"{APP}-v2"]
        assert pushed.image.startswith("sha256:")  # a local build, by its image id

        result = await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev"))
        assert [e.kind for e in result.removed][-1] == ResourceKind.NAMESPACE
        assert namespace(kube, lane) is None  # waited until it was gone
        # The QA namespace is never the lane's.
        assert [d["metadata"]["name"] for d in deployments(kube, qa)] == [f"{APP}-v1"]
    finally:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test cleanup")
