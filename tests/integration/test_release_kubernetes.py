"""The whole ReleaseWorkflow on a real Kubernetes control plane: the Temporal dev server, a
worker built as worker.py builds it, and kube-apiserver v1.20.2 with its controllers, a
scheduler and a hollow node (tests/support/kube_server.py). The worker acts as the service
account of deploy/kubernetes with exactly rbac.yaml's rights in the environment namespace.

Seed 004's grayscale: v1 has 10 replicas → one v2 beside them → wait until stable → v2 up and
v1 down to 5 each → wait until every version is stable → v1 shut. Every step is read back
from the API server's audit log: what Slipway asked for, and which pods the ReplicaSet
controller deleted.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from catalogue.store import CatalogueError, Store
from catalogue.tables import Baseline, Environment
from schemas.analysis import AnalysisPolicy, Metric
from schemas.enums import RuntimeKind
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Cluster, Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.changes import rollback_request
from starter.service.releases import follow, start_release, validate_release
from tests.support.hermetic import lb_port_start
from tests.support.kube_fixtures import KubeEnv

pytestmark = pytest.mark.integration

APP = "shop"
REPLICAS = 10


@pytest.fixture
def k8s_settings(tmp_path: Path, kube_env: KubeEnv,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with one Kubernetes cluster, ``k8s``, reached through a kubeconfig file that
    holds the worker's service-account token."""
    state = Path("/tmp") / f"slipway-k8s-{tmp_path.name}"
    values = Settings(
        state_dir=state, database_url=f"sqlite:///{tmp_path / 'slipway.db'}",
        clusters={"k8s": Cluster(runtime="kubernetes", kubeconfig=str(kube_env.kubeconfig))},
        default_cluster="k8s", task_queue=f"k8s-{tmp_path.name}", lb_port_start=lb_port_start(),
        drain_timeout_seconds=0.3, progress_deadline_seconds=60,
    )
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    yield values
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def k8s_store(k8s_settings: Settings) -> Store:
    store = Store(k8s_settings.resolved_database_url())
    store.migrate()
    return store


@pytest_asyncio.fixture
async def k8s_worker(temporal: WorkflowEnvironment, k8s_settings: Settings) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=8) as executor, ThreadPoolExecutor(2) as builds:
        async with (slipway_worker.make_worker(temporal.client, k8s_settings, executor),
                    slipway_worker.make_build_worker(temporal.client, k8s_settings, builds)):
            yield


def register_shop(store: Store, settings: Settings, env_namespace: str, *,
                  analysis: AnalysisPolicy | None = None, **env_row: Any) -> None:
    """Register shop with a prod environment on cluster k8s (gray unless ``env_row`` says
    otherwise)."""
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source="", description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster="k8s", replicas=REPLICAS, cpu="10m", memory="64Mi",
            ports=[8080], env_vars={"MODE": "prod"}, runtime=None, namespace=env_namespace,
            health_path="/healthz", settings=settings, actor="ana", strategy="gray",
            gray_steps=["1", "50%", "100%"], stable_seconds=1, approval="none",
            analysis=analysis)
    with store.session() as session:
        env = session.exec(select(Environment)).one()
        assert env.runtime == RuntimeKind.KUBERNETES
        for key, value in env_row.items():
            setattr(env, key, value)
        session.add(env)
        session.commit()


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  version: str = "", request: ReleaseRequest | None = None) -> ReleaseOutcome:
    request, summary = validate_release(store, request or ReleaseRequest(
        app=APP, env="prod", image=f"reg.test/{APP}:{version}", requested_by="ana"))
    started = await start_release(temporal.client, settings, request, summary)
    return await follow(started.handle, lambda _status: None)


def replicas(kube: KubeEnv, name: str) -> int | None:
    found = kube.server.find(f"/apis/apps/v1/namespaces/{kube.namespace}/deployments/{name}")
    return None if found is None else int(found["spec"]["replicas"])


def serving(kube: KubeEnv, version: int) -> list[str]:
    """Names of the version's ready pods the Service selects (traffic=on)."""
    return [p["metadata"]["name"] for p in kube.server.pods(
        kube.namespace, f"app={APP},traffic=on,version={version}")
        if {"type": "Ready", "status": "True"}.items() <= next(
            (c for c in p["status"].get("conditions", []) if c["type"] == "Ready"),
            {}).items()]


def baselines(store: Store) -> list[Baseline]:
    with store.session() as session:
        return list(session.exec(select(Baseline).order_by(col(Baseline.version))).all())


async def test_gray_release_follows_seed_004_step_by_step(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube_env: KubeEnv) -> None:
    register_shop(k8s_store, k8s_settings, kube_env.namespace)
    first = await release(temporal, k8s_settings, k8s_store, "1.0.0")
    assert first.baseline_version == 1
    assert replicas(kube_env, "shop-v1") == REPLICAS and len(serving(kube_env, 1)) == REPLICAS
    before = len(kube_env.server.steps(kube_env.namespace))

    second = await release(temporal, k8s_settings, k8s_store, "2.0.0")
    assert second.baseline_version == 2

    log = kube_env.server.steps(kube_env.namespace)[before:]
    steps = [(kind, name, value) for kind, name, value in log if kind in ("scale", "delete")]
    assert steps == [
        ("scale", "shop-v2", 1),    # a canary beside 10× v1; then wait until stable
        ("scale", "shop-v2", 5),    # v2 up ...
        ("scale", "shop-v1", 5),    # ... v1 down; then wait until every version is stable
        ("scale", "shop-v2", 10),
        ("delete", "shop-v1", None),  # v1 shut
    ]
    # Before the scale-down the leaving v1 pods left the Service (traffic=off), and the real
    # ReplicaSet controller deleted exactly those pods, nothing that still served.
    scale_v1 = log.index(("scale", "shop-v1", 5))
    flipped = [name for kind, name, value in log[:scale_v1]
               if kind == "traffic" and value == "off"]
    assert len(flipped) == 5 and all(name.startswith("shop-v1-") for name in flipped)
    shut = log.index(("delete", "shop-v1", None))
    evicted = [(name, value) for kind, name, value in log[scale_v1:shut] if kind == "evict"]
    assert sorted(name for name, _ in evicted) == sorted(flipped)
    assert all(value == "off" for _, value in evicted)
    assert not any(kind == "traffic" and name.startswith("shop-v2-") and value == "off"
                   for kind, name, value in log)

    assert replicas(kube_env, "shop-v1") is None
    assert replicas(kube_env, "shop-v2") == REPLICAS
    assert len(serving(kube_env, 2)) == REPLICAS
    ns = kube_env.namespace
    deployment = kube_env.server.get(f"/apis/apps/v1/namespaces/{ns}/deployments/shop-v2")
    service = kube_env.server.get(f"/api/v1/namespaces/{ns}/services/{APP}")
    assert deployment["metadata"]["labels"]["slipway.env"] == "shop-prod-k8s"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "reg.test/shop:2.0.0"
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": APP, "traffic": "on"}
    assert [b.version for b in baselines(k8s_store)] == [1, 2]
    assert baselines(k8s_store)[1].image == "reg.test/shop:2.0.0"

    # A fast rollback to baseline 1: v1's image back at full strength in one step.
    third = await release(temporal, k8s_settings, k8s_store, request=rollback_request(
        k8s_store, APP, "prod", actor="ana"))
    assert third.baseline_version == 3
    assert replicas(kube_env, "shop-v3") == REPLICAS
    assert len(serving(kube_env, 3)) == REPLICAS
    assert replicas(kube_env, "shop-v2") is None
    assert baselines(k8s_store)[2].image == "reg.test/shop:1.0.0"


@pytest.mark.parametrize("strategy", ["rolling", "recreate"])
async def test_rolling_and_recreate_replace_every_pod(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube_env: KubeEnv, strategy: str) -> None:
    register_shop(k8s_store, k8s_settings, kube_env.namespace, strategy=strategy,
                  replicas=4, batch_size=2)
    await release(temporal, k8s_settings, k8s_store, "1.0.0")
    v1_pods = set(serving(kube_env, 1))
    assert len(v1_pods) == 4

    outcome = await release(temporal, k8s_settings, k8s_store, "2.0.0")

    assert outcome.baseline_version == 2
    assert replicas(kube_env, "shop-v1") is None and replicas(kube_env, "shop-v2") == 4
    assert len(serving(kube_env, 2)) == 4
    log = kube_env.server.steps(kube_env.namespace)
    evicted = {name for kind, name, _ in log if kind == "evict"}
    # Every v1 pod the controllers removed had left the Service first.
    drained = {name for kind, name, value in log if kind == "traffic" and value == "off"}
    assert evicted <= drained
    if strategy == "recreate":  # all of v1 out before v2 exists
        first_v2 = next(i for i, step in enumerate(log) if step[:2] == ("scale", "shop-v2"))
        assert {name for kind, name, value in log[:first_v2]
                if kind == "traffic" and value == "off"} == v1_pods


async def test_a_version_the_quota_refuses_is_rolled_back_and_v1_keeps_serving(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube_env: KubeEnv) -> None:
    register_shop(k8s_store, k8s_settings, kube_env.namespace)
    await release(temporal, k8s_settings, k8s_store, "1.0.0")
    v1_pods = set(serving(kube_env, 1))
    # An operator's quota: room for the canary beside v1, not for the 50% step.
    kube_env.server.send("POST", f"/api/v1/namespaces/{kube_env.namespace}/resourcequotas", {
        "metadata": {"name": "pods"}, "spec": {"hard": {"pods": str(REPLICAS + 2)}}})

    with pytest.raises(CatalogueError, match="rolled_back: .*exceeded quota"):
        await release(temporal, k8s_settings, k8s_store, "2.0.0")

    assert replicas(kube_env, "shop-v2") is None
    assert replicas(kube_env, "shop-v1") == REPLICAS
    assert set(serving(kube_env, 1)) == v1_pods  # the same pods served throughout
    assert [b.version for b in baselines(k8s_store)] == [1]


@pytest.fixture
def error_rates() -> Iterator[tuple[str, dict[str, float]]]:
    """A loopback JSON endpoint with each version's error rate (what a team's metrics
    service answers): ``/errors/<version>`` → ``{"error_rate": x}``."""
    rates: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (the stdlib's name)
            body = json.dumps({"error_rate": rates.get(self.path.rsplit("/", 1)[-1], 0.0)})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/errors/{{{{version}}}}", rates
    finally:
        server.shutdown()
        server.server_close()


async def test_canary_analysis_judges_a_kubernetes_gray_release(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube_env: KubeEnv,
        error_rates: tuple[str, dict[str, float]]) -> None:
    """Analysis applies on Kubernetes through the metrics a team already has (Prometheus or
    a JSON endpoint): the Service, not HAProxy, carries the traffic, so HAProxy's figures do
    not. v2's error rate fails the canary step; the release rolls back, v1 never shrank."""
    url, rates = error_rates
    register_shop(k8s_store, k8s_settings, kube_env.namespace, analysis=AnalysisPolicy(
        metrics=[Metric(name="errors", provider="web", query=url, field="error_rate", max=0.1,
                        interval_seconds=1)]))
    await release(temporal, k8s_settings, k8s_store, "1.0.0")
    v1_pods = set(serving(kube_env, 1))
    rates["2"] = 0.5

    with pytest.raises(CatalogueError, match="rolled_back: canary analysis failed at step 1"):
        await release(temporal, k8s_settings, k8s_store, "2.0.0")

    assert replicas(kube_env, "shop-v2") is None
    assert set(serving(kube_env, 1)) == v1_pods
    assert [b.version for b in baselines(k8s_store)] == [1]


def left_behind(kube: KubeEnv) -> dict[str, list[str]]:
    """Objects of the app in this test's namespaces (the granted one and its neighbours)."""
    return {kind: [item["metadata"]["name"] for item in kube.server.get(
        path, labelSelector=f"app={APP}")["items"]
        if item["metadata"]["namespace"].startswith(kube.namespace)]
        for kind, path in (("deployments", "/apis/apps/v1/deployments"),
                           ("services", "/api/v1/services"))}


@pytest.mark.parametrize(("env_row", "message"), [
    ({"namespace": "{ns}-nowhere"},
     r"namespace .{ns}-nowhere.: not allowed .*403.*Either the namespace does not exist"),
    ({"namespace": "{ns}-locked"},
     r"namespace '{ns}-locked': not allowed .*403.*system:serviceaccount:slipway:slipway-worker"),
    ({"memory": "lots"},
     r"namespace '{ns}': the API rejected .*quantities must match the regular expression"),
], ids=["missing-namespace", "namespace-without-rbac", "invalid-quantity"])
async def test_bad_input_fails_clearly_and_leaves_nothing_half_created(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube_env: KubeEnv, env_row: dict[str, str], message: str) -> None:
    """On a real server a namespace the account was not granted is a 403, whether it exists
    or not (the account may not even look): RBAC from deploy/kubernetes at work."""
    ns = kube_env.namespace
    kube_env.server.create_namespace(f"{ns}-locked")
    try:
        row: dict[str, Any] = {k: v.format(ns=ns) for k, v in env_row.items()}
        register_shop(k8s_store, k8s_settings, ns, **row)
        with pytest.raises(CatalogueError, match=message.format(ns=ns)):
            await release(temporal, k8s_settings, k8s_store, "1.0.0")
        # No Deployment, no pod. (The app's Service belongs to the environment, as its load
        # balancer frontend does on Docker: when it exists it selects no pod.)
        assert left_behind(kube_env)["deployments"] == []
        assert kube_env.server.pods(ns) == []
        assert baselines(k8s_store) == []
    finally:
        kube_env.server.delete_namespace(f"{ns}-locked")
