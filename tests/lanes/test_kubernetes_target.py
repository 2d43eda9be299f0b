"""KubernetesLaneTarget against the kmock API emulator, over HTTP with the official client:
a namespace per lane, a Deployment per version and a Service per app inside it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from integrations.errors import (
    ClusterUnavailableError,
    NamespaceMissingError,
    PermanentRuntimeError,
)
from integrations.haproxy.router import HaproxyRouter
from integrations.kubernetes.runtime import KubernetesRuntime
from lanes.janitor import LaneJanitor, Liveness
from lanes.kubernetes_target import ForeignNamespaceError, KubernetesLaneTarget
from lanes.target import LaneDeployment
from schemas.settings import Cluster
from tests.support.kube import (
    DEPLOYMENTS,
    PODS,
    SERVICES,
    selector_matches,
)
from tests.support.kube_lanes import LaneCluster, lane_cluster

T = TypeVar("T")
LANE = "feat-pay"
ENV_KEY = f"shop-lane-{LANE}"
MANAGED = "app.kubernetes.io/managed-by"


@pytest_asyncio.fixture(name="kube")
async def lane_cluster_fixture(tmp_path: Path) -> AsyncIterator[LaneCluster]:
    """An emulated cluster with a production namespace a lane must never touch."""
    async with lane_cluster(tmp_path, {"shop-prod"}) as cluster:
        yield cluster


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The client is synchronous and the emulator serves on this loop: call from a thread,
    bounded so a hang fails the test instead of stalling the run."""
    return await asyncio.wait_for(asyncio.to_thread(fn, *args, **kwargs), 20)


def target_for(kube: LaneCluster, **options: Any) -> KubernetesLaneTarget:
    """Built as worker.lane_target builds it, with short waits for the tests."""
    runtime = KubernetesRuntime.from_cluster(
        Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig)), name="k8s")
    runtime.poll_seconds = 0.05
    return KubernetesLaneTarget(runtime, deadline_seconds=10,
                                **{"drain_seconds": 0.1, **options})


def want(version: int, lane: str = LANE) -> LaneDeployment:
    return LaneDeployment(lane=lane, app="shop", image=f"reg.test/shop:{version}.0",
                          version=version, ports=[8080],
                          env_vars={"MODE": "qa", "SLIPWAY_LANE": lane}, memory="64Mi",
                          health_path="/ready")


def served_versions(kube: LaneCluster, namespace: str = LANE) -> list[str]:
    """The versions of the pods the app's Service selects right now."""
    service = kube.emulator.live(SERVICES, namespace)["shop"]
    return sorted(p["metadata"]["labels"]["version"]
                  for p in kube.emulator.live(PODS, namespace).values()
                  if selector_matches(",".join(f"{k}={v}" for k, v in
                                               service["spec"]["selector"].items()),
                                      p["metadata"]["labels"]))


def namespace_log(kube: LaneCluster) -> list[tuple[str, str, Any]]:
    return [entry for entry in kube.emulator.log if entry[0] == "namespace"]


async def test_the_lane_namespace_is_created_labelled_adopted_and_deleted(
        kube: LaneCluster) -> None:
    target = target_for(kube)
    detail = await run(target.create_namespace, LANE)

    assert detail == {"runtime": "kubernetes", "cluster": "k8s", "namespace": LANE,
                      "created": True}
    labels = kube.emulator.namespace_objects[LANE]["metadata"]["labels"]
    assert labels == {"slipway.lane": LANE, MANAGED: "slipway"}
    # A retry adopts the namespace it made: still ours, still deleted with the lane.
    assert await run(target.create_namespace, LANE) == detail
    assert namespace_log(kube) == [("namespace", LANE, "create")]

    await run(target.delete_namespace, detail)
    assert LANE not in kube.emulator.namespace_objects  # waited until it was gone
    await run(target.delete_namespace, detail)  # already gone is fine
    assert namespace_log(kube) == [("namespace", LANE, "create"), ("namespace", LANE, "delete"),
                                   ("namespace", LANE, "gone")]
    assert "shop-prod" in kube.emulator.namespaces


async def test_deleting_waits_a_bounded_time_then_accepts_terminating(
        kube: LaneCluster) -> None:
    target = target_for(kube, namespace_timeout_seconds=0.3)
    detail = await run(target.create_namespace, LANE)
    kube.emulator.finalize_after = None  # a finalizer that never finishes
    started = time.monotonic()
    await run(target.delete_namespace, detail)
    assert 0.3 <= time.monotonic() - started < 5
    assert kube.emulator.namespace_objects[LANE]["status"]["phase"] == "Terminating"

    # A lane of the same name must wait for it: retryable, not permanent.
    with pytest.raises(ClusterUnavailableError, match="still terminating") as waiting:
        await run(target.create_namespace, LANE)
    assert not isinstance(waiting.value, PermanentRuntimeError)


@pytest.mark.parametrize("labels", [{"team": "payments"}, {"slipway.lane": "other-lane",
                                                           MANAGED: "slipway"}])
async def test_a_namespace_that_is_not_the_lanes_is_refused_and_left_alone(
        kube: LaneCluster, labels: dict[str, str]) -> None:
    kube.emulator.add_namespace(LANE, labels)
    target = target_for(kube)
    with pytest.raises(ForeignNamespaceError) as refused:
        await run(target.create_namespace, LANE)
    assert isinstance(refused.value, PermanentRuntimeError)
    assert f"namespace '{LANE}'" in str(refused.value)
    assert "cluster 'k8s'" in str(refused.value)

    # Even a ledger saying we created it does not get someone else's namespace deleted.
    with pytest.raises(ForeignNamespaceError):
        await run(target.delete_namespace, {"runtime": "kubernetes", "cluster": "k8s",
                                            "namespace": LANE, "created": True})
    assert kube.emulator.namespace_objects[LANE]["metadata"]["labels"] == labels
    assert kube.emulator.namespace_objects[LANE]["status"]["phase"] == "Active"
    assert namespace_log(kube) == []


async def test_deploy_runs_the_version_in_the_lane_namespace_behind_a_service(
        kube: LaneCluster) -> None:
    target = target_for(kube)
    await run(target.create_namespace, LANE)
    messages: list[str] = []
    detail = await run(target.deploy, want(1), messages.append)

    assert detail == {"runtime": "kubernetes", "cluster": "k8s", "namespace": LANE,
                      "env_key": ENV_KEY, "image": "reg.test/shop:1.0", "version": 1,
                      "service": "shop", "port": 8080,
                      "url": f"http://shop.{LANE}.svc:8080/"}
    assert any("1/1 replicas of v1 ready" in m for m in messages)
    deployment = kube.emulator.deployment(LANE, "shop-v1")
    assert deployment is not None
    assert deployment["metadata"]["labels"]["slipway.env"] == ENV_KEY
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.test/shop:1.0"
    assert {"name": "SLIPWAY_LANE", "value": LANE} in container["env"]
    assert {"name": "MODE", "value": "qa"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": 8080}
    assert deployment["spec"]["replicas"] == 1
    service = kube.emulator.live(SERVICES, LANE)["shop"]
    assert service["spec"]["selector"] == {"app": "shop", "traffic": "on"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, 8080)]
    assert served_versions(kube) == ["1"]
    # Nothing outside the lane's namespace.
    assert kube.emulator.live(DEPLOYMENTS, "shop-prod") == {}
    assert kube.emulator.live(SERVICES, "shop-prod") == {}

    # Idempotent: a retried deploy changes nothing.
    assert await run(target.deploy, want(1)) == detail
    assert kube.emulator.deployment(LANE, "shop-v1")["metadata"]["generation"] == 1  # type: ignore[index]


async def test_a_newer_version_takes_over_and_retire_removes_the_old_one(
        kube: LaneCluster) -> None:
    target = target_for(kube)
    await run(target.create_namespace, LANE)
    first = await run(target.deploy, want(1))
    second = await run(target.deploy, want(2))
    assert served_versions(kube) == ["1", "2"]  # both serve until the old one is retired

    await run(target.retire, first, "shop")
    assert set(kube.emulator.live(DEPLOYMENTS, LANE)) == {"shop-v2"}
    assert served_versions(kube) == ["2"]
    old_pods = [e for e in kube.emulator.log if e[0] == "traffic" and e[1].startswith("shop-v1")]
    # The old pod left the Service before its Deployment was deleted.
    assert old_pods == [("traffic", old_pods[0][1], "off")]
    assert kube.emulator.log.index(old_pods[0]) < kube.emulator.log.index(
        ("delete", "shop-v1", None))
    assert second["version"] == 2 and second["url"] == first["url"]
    await run(target.retire, first, "shop")  # already retired is fine
    await asyncio.sleep(0.2)
    assert kube.emulator.pods_of(LANE, "shop-v1") == []


async def test_remove_deletes_the_service_and_every_version_of_the_app(
        kube: LaneCluster) -> None:
    target = target_for(kube)
    namespace = await run(target.create_namespace, LANE)
    first = await run(target.deploy, want(1))
    # A redeploy that stopped before retiring v1: the ledger still names v1 only.
    await run(target.deploy, want(2))

    await run(target.remove, first, "shop")
    assert kube.emulator.live(DEPLOYMENTS, LANE) == {}
    assert kube.emulator.live(SERVICES, LANE) == {}
    await asyncio.sleep(0.2)
    assert kube.emulator.live(PODS, LANE) == {}
    await run(target.remove, first, "shop")  # already gone is fine
    assert LANE in kube.emulator.namespaces  # the namespace goes with delete_namespace

    await run(target.delete_namespace, namespace)
    await run(target.remove, first, "shop")  # and after the namespace went, too
    await run(target.retire, first, "shop")


async def test_deploying_into_a_lane_without_its_namespace_is_permanent(
        kube: LaneCluster) -> None:
    target = target_for(kube)
    with pytest.raises(NamespaceMissingError, match=f"'{LANE}'"):
        await run(target.deploy, want(1))
    assert LANE not in kube.emulator.namespaces


def test_the_lane_manifest_grants_what_lanes_use() -> None:
    import yaml

    manifest = Path(__file__).parents[2] / "deploy" / "kubernetes" / "rbac-lanes.yaml"
    role, binding, _policy, _policy_binding = yaml.safe_load_all(manifest.read_text())
    rules = {(group, resource): sorted(rule["verbs"])
             for rule in role["rules"] for group in rule["apiGroups"]
             for resource in rule["resources"]}
    assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
    assert rules[("", "namespaces")] == ["create", "delete", "get"]
    assert rules[("", "services")] == ["create", "delete", "get", "patch"]
    assert rules[("apps", "deployments")] == ["create", "delete", "get", "list", "patch"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "slipway-worker",
                                    "namespace": "slipway"}]


async def test_the_janitor_deletes_namespaces_of_dead_lanes_only(kube: LaneCluster) -> None:
    target = target_for(kube)
    for lane in ("live-lane", "dead-lane"):
        await run(target.create_namespace, lane)
    # Labelled for a lane, but not named after it: not a lane namespace, never touched.
    kube.emulator.add_namespace("impostor", {"slipway.lane": "dead-lane"})
    janitor = LaneJanitor([], HaproxyRouter(kube.kubeconfig.parent / "lb"), [target])

    assert await run(target.lane_namespaces) == ["dead-lane", "live-lane"]
    def liveness(lane: str) -> Liveness:
        return Liveness.ALIVE if lane == "live-lane" else Liveness.GONE

    assert await run(janitor.sweep, liveness) == {}  # gone once: a suspect only
    removed = await run(janitor.sweep, liveness)

    assert removed == {"dead-lane": ["namespace dead-lane@k8s"]}
    assert set(kube.emulator.namespace_objects) == {"shop-prod", "live-lane", "impostor"}
