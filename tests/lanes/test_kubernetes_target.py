"""KubernetesLaneTarget against a real API server (tests/support/kube_server.py), acting as
the worker's service account with the rights deploy/kubernetes/rbac-lanes.yaml grants: a
namespace per lane, a Deployment per version and a Service per app inside it, and the
janitor's sweep of the namespaces of dead lanes. The namespace controller, the ReplicaSet
controller and the scheduler are real."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

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
from tests.support.kube_fixtures import KubeEnv, unique

pytestmark = pytest.mark.integration

MANAGED = "app.kubernetes.io/managed-by"


@pytest.fixture
def lane() -> str:
    """A lane name of this test's own: namespaces take a moment to go."""
    return unique("feat-pay")


def target_for(kube: KubeEnv, **options: Any) -> KubernetesLaneTarget:
    """Built as worker.lane_target builds it, with short waits for the tests."""
    runtime = KubernetesRuntime.from_cluster(
        Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig)), name="k8s")
    runtime.poll_seconds = 0.1
    return KubernetesLaneTarget(runtime, deadline_seconds=60,
                                **{"drain_seconds": 0.1, **options})


def want(version: int, lane: str) -> LaneDeployment:
    return LaneDeployment(lane=lane, app="shop", image=f"reg.test/shop:{version}.0",
                          version=version, ports=[8080],
                          env_vars={"MODE": "qa", "SLIPWAY_LANE": lane}, memory="64Mi",
                          health_path="/ready")


def namespace(kube: KubeEnv, name: str) -> dict[str, Any] | None:
    return kube.server.find(f"/api/v1/namespaces/{name}")


def deployments(kube: KubeEnv, ns: str) -> set[str]:
    found = kube.server.get(f"/apis/apps/v1/namespaces/{ns}/deployments")["items"]
    return {d["metadata"]["name"] for d in found}


def deployment(kube: KubeEnv, ns: str, name: str) -> dict[str, Any]:
    return kube.server.get(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


def served_versions(kube: KubeEnv, lane: str) -> list[str]:
    """The versions of the pods the app's Service selects right now."""
    selector = kube.server.get(f"/api/v1/namespaces/{lane}/services/shop")["spec"]["selector"]
    return sorted(p["metadata"]["labels"]["version"] for p in kube.server.pods(
        lane, ",".join(f"{k}={v}" for k, v in selector.items())))


def eventually(check: Callable[[], Any], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds}s: {check}"
        time.sleep(0.1)


def test_the_lane_namespace_is_created_labelled_adopted_and_deleted(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube)
    detail = target.create_namespace(lane)

    assert detail == {"runtime": "kubernetes", "cluster": "k8s", "namespace": lane,
                      "created": True}
    created = namespace(lane_kube, lane)
    assert created is not None
    assert created["metadata"]["labels"] == {"slipway.lane": lane, MANAGED: "slipway"}
    # A retry adopts the namespace it made: still ours, still deleted with the lane.
    assert target.create_namespace(lane) == detail
    assert (namespace(lane_kube, lane) or {})["metadata"]["uid"] == created["metadata"]["uid"]

    target.delete_namespace(detail)
    assert namespace(lane_kube, lane) is None  # waited until the controller finished
    target.delete_namespace(detail)  # already gone is fine
    assert namespace(lane_kube, lane_kube.namespace) is not None


def test_deleting_waits_a_bounded_time_then_accepts_terminating(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube, namespace_timeout_seconds=1)
    detail = target.create_namespace(lane)
    # Something in the namespace with a finalizer nobody removes: the namespace controller
    # cannot finish, so the namespace stays Terminating.
    lane_kube.server.send("POST", f"/api/v1/namespaces/{lane}/configmaps", {
        "metadata": {"name": "held", "finalizers": ["slipway.test/held"]}})
    try:
        began = time.monotonic()
        target.delete_namespace(detail)
        assert 1 <= time.monotonic() - began < 20
        assert (namespace(lane_kube, lane) or {})["status"]["phase"] == "Terminating"

        # A lane of the same name must wait for it: retryable, not permanent.
        with pytest.raises(ClusterUnavailableError, match="still terminating") as waiting:
            target.create_namespace(lane)
        assert not isinstance(waiting.value, PermanentRuntimeError)
    finally:
        lane_kube.server.send("PATCH", f"/api/v1/namespaces/{lane}/configmaps/held",
                              {"metadata": {"finalizers": None}})
    eventually(lambda: namespace(lane_kube, lane) is None)


@pytest.mark.parametrize("labels", [{"team": "payments"}, {"slipway.lane": "other-lane",
                                                           MANAGED: "slipway"}])
def test_a_namespace_that_is_not_the_lanes_is_refused_and_left_alone(
        lane_kube: KubeEnv, lane: str, labels: dict[str, str]) -> None:
    lane_kube.server.create_namespace(lane, labels)
    target = target_for(lane_kube)
    with pytest.raises(ForeignNamespaceError) as refused:
        target.create_namespace(lane)
    assert isinstance(refused.value, PermanentRuntimeError)
    assert f"namespace '{lane}'" in str(refused.value)
    assert "cluster 'k8s'" in str(refused.value)

    # Even a ledger saying we created it does not get someone else's namespace deleted.
    with pytest.raises(ForeignNamespaceError):
        target.delete_namespace({"runtime": "kubernetes", "cluster": "k8s",
                                 "namespace": lane, "created": True})
    found = namespace(lane_kube, lane)
    assert found is not None and found["metadata"]["labels"] == labels
    assert found["status"]["phase"] == "Active"
    lane_kube.server.delete_namespace(lane)


def test_deploy_runs_the_version_in_the_lane_namespace_behind_a_service(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube)
    target.create_namespace(lane)
    messages: list[str] = []
    detail = target.deploy(want(1, lane), messages.append)

    env_key = f"shop-lane-{lane}"
    assert detail == {"runtime": "kubernetes", "cluster": "k8s", "namespace": lane,
                      "env_key": env_key, "image": "reg.test/shop:1.0", "version": 1,
                      "service": "shop", "port": 8080,
                      "url": f"http://shop.{lane}.svc:8080/"}
    assert any("1/1 replicas of v1 ready" in m for m in messages)
    found = deployment(lane_kube, lane, "shop-v1")
    assert found["metadata"]["labels"]["slipway.env"] == env_key
    container = found["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "reg.test/shop:1.0"
    variables = {item["name"]: item["value"] for item in container["env"]}
    assert (variables["SLIPWAY_LANE"], variables["MODE"]) == (lane, "qa")
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert found["spec"]["replicas"] == 1
    service = lane_kube.server.get(f"/api/v1/namespaces/{lane}/services/shop")["spec"]
    assert service["selector"] == {"app": "shop", "traffic": "on"}
    assert [(p["port"], p["targetPort"]) for p in service["ports"]] == [(8080, 8080)]
    assert served_versions(lane_kube, lane) == ["1"]
    # Nothing outside the lane's namespace.
    assert deployments(lane_kube, lane_kube.namespace) == set()

    # Idempotent: a retried deploy changes nothing.
    assert target.deploy(want(1, lane)) == detail
    assert deployment(lane_kube, lane, "shop-v1")["metadata"]["generation"] == 1
    target.delete_namespace(target.create_namespace(lane))


def test_a_newer_version_takes_over_and_retire_removes_the_old_one(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube)
    namespace_detail = target.create_namespace(lane)
    first = target.deploy(want(1, lane))
    second = target.deploy(want(2, lane))
    assert served_versions(lane_kube, lane) == ["1", "2"]  # both serve until v1 is retired

    target.retire(first, "shop")
    assert deployments(lane_kube, lane) == {"shop-v2"}
    assert served_versions(lane_kube, lane) == ["2"]
    assert second["version"] == 2 and second["url"] == first["url"]
    target.retire(first, "shop")  # already retired is fine
    # The garbage collector removes the old ReplicaSet's pods.
    eventually(lambda: lane_kube.server.pods(lane, "version=1") == [])
    target.delete_namespace(namespace_detail)


def test_remove_deletes_the_service_and_every_version_of_the_app(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube)
    namespace_detail = target.create_namespace(lane)
    first = target.deploy(want(1, lane))
    # A redeploy that stopped before retiring v1: the ledger still names v1 only.
    target.deploy(want(2, lane))

    target.remove(first, "shop")
    assert deployments(lane_kube, lane) == set()
    assert lane_kube.server.get(f"/api/v1/namespaces/{lane}/services")["items"] == []
    eventually(lambda: lane_kube.server.pods(lane) == [])
    target.remove(first, "shop")  # already gone is fine
    assert namespace(lane_kube, lane) is not None  # the namespace goes with delete_namespace

    target.delete_namespace(namespace_detail)
    target.remove(first, "shop")  # and after the namespace went, too
    target.retire(first, "shop")


def test_deploying_into_a_lane_without_its_namespace_is_permanent(
        lane_kube: KubeEnv, lane: str) -> None:
    target = target_for(lane_kube)
    with pytest.raises(NamespaceMissingError, match=f"'{lane}'"):
        target.deploy(want(1, lane))
    assert namespace(lane_kube, lane) is None


def test_the_janitor_deletes_namespaces_of_dead_lanes_only(lane_kube: KubeEnv, tmp_path: Any,
                                                           lane: str) -> None:
    target = target_for(lane_kube)
    live, dead = f"{lane}-live", f"{lane}-dead"
    for name in (live, dead):
        target.create_namespace(name)
    # Labelled for a lane, but not named after it: not a lane namespace, never touched.
    impostor = f"{lane}-impostor"
    lane_kube.server.create_namespace(impostor, {"slipway.lane": dead})
    janitor = LaneJanitor([], HaproxyRouter(tmp_path / "lb"), [target])

    assert {live, dead} <= set(target.lane_namespaces())
    assert impostor not in target.lane_namespaces()

    def liveness(name: str) -> Liveness:
        return Liveness.GONE if name == dead else Liveness.ALIVE

    assert janitor.sweep(liveness) == {}  # gone once: a suspect only
    removed = janitor.sweep(liveness)

    assert removed == {dead: [f"namespace {dead}@k8s"]}
    assert namespace(lane_kube, dead) is None
    assert namespace(lane_kube, live) is not None and namespace(lane_kube, impostor) is not None
    assert namespace(lane_kube, lane_kube.namespace) is not None
