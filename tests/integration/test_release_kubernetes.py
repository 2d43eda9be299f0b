"""The whole ReleaseWorkflow on a Kubernetes cluster: the Temporal dev server, a worker built
as worker.py builds it, and the kmock API emulator (with its kubelet) behind a kubeconfig.

Seed 004's grayscale: v1 has 10 replicas → one v2 beside them → wait until stable → v2 up and
v1 down to 5 each → wait until every version is stable → v1 shut. Every step is read back from
the emulator's log of what the API was asked to do.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

import worker as slipway_worker
from catalogue.store import CatalogueError, Store
from catalogue.tables import Baseline, Environment
from schemas.enums import RuntimeKind
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Cluster, Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.support.hermetic import lb_port_start
from tests.support.kube import (
    DEPLOYMENTS,
    PODS,
    SERVICES,
    KubeCluster,
    kube_fixture,  # noqa: F401  (the `kube` fixture)
)

pytestmark = pytest.mark.integration

APP = "shop"
NS = "shop-prod"
REPLICAS = 10


@pytest.fixture
def k8s_settings(tmp_path: Path, kube: KubeCluster,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings with one Kubernetes cluster, ``k8s``, reached through a kubeconfig file."""
    state = Path("/tmp") / f"slipway-k8s-{tmp_path.name}"
    values = Settings(
        state_dir=state, database_url=f"sqlite:///{tmp_path / 'slipway.db'}",
        clusters={"k8s": Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig))},
        default_cluster="k8s", task_queue=f"k8s-{tmp_path.name}", lb_port_start=lb_port_start(),
        drain_timeout_seconds=0.3, progress_deadline_seconds=20,
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


def register_shop(store: Store, settings: Settings, **env_row: Any) -> None:
    """Register shop with a gray prod environment on cluster k8s (``env_row`` overrides)."""
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source="", description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster="k8s", replicas=REPLICAS, cpu="250m", memory="64Mi",
            ports=[8080], env_vars={"MODE": "prod"}, runtime=None, namespace=NS,
            health_path="/healthz", settings=settings, actor="ana", strategy="gray",
            gray_steps=["1", "50%", "100%"], stable_seconds=1, approval="none")
    with store.session() as session:
        env = session.exec(select(Environment)).one()
        assert env.runtime == RuntimeKind.KUBERNETES
        for key, value in env_row.items():
            setattr(env, key, value)
        session.add(env)
        session.commit()


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  version: str) -> ReleaseOutcome:
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="prod", image=f"reg.test/{APP}:{version}", requested_by="ana"))
    started = await start_release(temporal.client, settings, request, summary)
    return await follow(started.handle, lambda _status: None)


def replicas(kube: KubeCluster, name: str) -> int | None:
    deployment = kube.emulator.deployment(NS, name)
    return None if deployment is None else int(deployment["spec"]["replicas"])


def serving(kube: KubeCluster, deployment: str) -> int:
    return sum(p["metadata"]["labels"]["traffic"] == "on"
               for p in kube.emulator.pods_of(NS, deployment))


def baselines(store: Store) -> list[Baseline]:
    with store.session() as session:
        return list(session.exec(select(Baseline).order_by(col(Baseline.version))).all())


async def test_gray_release_follows_seed_004_step_by_step(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube: KubeCluster) -> None:
    register_shop(k8s_store, k8s_settings)
    first = await release(temporal, k8s_settings, k8s_store, "1.0.0")
    assert first.baseline_version == 1
    assert replicas(kube, "shop-v1") == REPLICAS and serving(kube, "shop-v1") == REPLICAS
    kube.emulator.log.clear()

    second = await release(temporal, k8s_settings, k8s_store, "2.0.0")
    assert second.baseline_version == 2

    log = kube.emulator.log
    steps = [(kind, name, value) for kind, name, value in log if kind in ("scale", "delete")]
    assert steps == [
        ("scale", "shop-v2", 1),    # a canary beside 10× v1; then wait until stable
        ("scale", "shop-v2", 5),    # v2 up ...
        ("scale", "shop-v1", 5),    # ... v1 down; then wait until every version is stable
        ("scale", "shop-v2", 10),
        ("delete", "shop-v1", None),  # v1 shut
    ]
    # Before each scale-down the leaving v1 pods left the Service (traffic=off), and the
    # scale-down removed exactly those pods.
    scale_v1 = log.index(("scale", "shop-v1", 5))
    flipped = [name for kind, name, value in log[:scale_v1]
               if kind == "traffic" and value == "off"]
    assert len(flipped) == 5 and all(name.startswith("shop-v1-") for name in flipped)
    evicted = [(name, value) for kind, name, value in log if kind == "evict"]
    assert evicted and {name for name, _ in evicted} == set(flipped)
    assert all(value == "off" for _, value in evicted)
    shut = log.index(("delete", "shop-v1", None))
    assert sum(kind == "traffic" and value == "off"
               for kind, _, value in log[scale_v1:shut]) == 5
    assert not any(kind == "traffic" and name.startswith("shop-v2-") and value == "off"
                   for kind, name, value in log)

    assert replicas(kube, "shop-v1") is None
    assert replicas(kube, "shop-v2") == REPLICAS and serving(kube, "shop-v2") == REPLICAS
    deployment = kube.emulator.deployment(NS, "shop-v2")
    assert deployment is not None
    assert deployment["metadata"]["labels"]["slipway.env"] == "shop-prod-k8s"
    assert deployment["spec"]["template"]["metadata"]["labels"]["traffic"] == "on"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "reg.test/shop:2.0.0"
    service = kube.emulator.live(SERVICES, NS)[APP]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": APP, "traffic": "on"}
    assert [b.version for b in baselines(k8s_store)] == [1, 2]
    assert baselines(k8s_store)[1].image == "reg.test/shop:2.0.0"


async def test_an_unhealthy_v2_is_rolled_back_and_v1_is_back_at_full_count(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube: KubeCluster) -> None:
    register_shop(k8s_store, k8s_settings)
    await release(temporal, k8s_settings, k8s_store, "1.0.0")
    # v2 passes readiness at every step, then crash-loops once v1 is down to half: the
    # wait-for-stable health check catches it after v1 has already lost 5 pods.
    kube.kubelet.fail_health("shop-v2", when=lambda: replicas(kube, "shop-v1") == 5)

    with pytest.raises(CatalogueError, match="rolled_back: v2 unhealthy.*CrashLoopBackOff"):
        await release(temporal, k8s_settings, k8s_store, "2.0.0")

    assert replicas(kube, "shop-v2") is None
    assert replicas(kube, "shop-v1") == REPLICAS and serving(kube, "shop-v1") == REPLICAS
    assert ("scale", "shop-v1", REPLICAS) in kube.emulator.log[
        kube.emulator.log.index(("scale", "shop-v1", 5)):]
    assert [b.version for b in baselines(k8s_store)] == [1]


def left_behind(kube: KubeCluster) -> dict[str, Any]:
    return {str(resource.plural): kube.emulator.live(resource)
            for resource in (DEPLOYMENTS, PODS)} | {"namespaces": kube.emulator.namespaces}


@pytest.mark.parametrize(("env_row", "message"), [
    ({"namespace": "nowhere"},
     r"cluster 'k8s', namespace 'nowhere': the namespace does not exist"),
    ({"namespace": "locked"},
     r"cluster 'k8s', namespace 'locked': not allowed .*403"),
    ({"memory": "lots"},
     r"namespace 'shop-prod': the API rejected .*Invalid value: \"lots\""),
], ids=["missing-namespace", "forbidden-namespace", "invalid-quantity"])
async def test_bad_input_fails_clearly_and_leaves_nothing_half_created(
        temporal: WorkflowEnvironment, k8s_worker: None, k8s_settings: Settings,
        k8s_store: Store, kube: KubeCluster, env_row: dict[str, str], message: str) -> None:
    kube.emulator.create_namespace("locked")
    kube.emulator.forbidden.add("locked")
    register_shop(k8s_store, k8s_settings, **env_row)

    with pytest.raises(CatalogueError, match=message):
        await release(temporal, k8s_settings, k8s_store, "1.0.0")

    assert left_behind(kube) == {"deployments": {}, "pods": {},
                                 "namespaces": {"shop-prod", "locked"}}
    assert baselines(k8s_store) == []
