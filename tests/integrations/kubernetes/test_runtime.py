"""KubernetesRuntime + KubernetesTraffic against a real API server (v1.20.2 with the
pod-deletion-cost backport, tests/support/kube_server.py), acting as the worker's service
account with exactly the rights deploy/kubernetes/rbac.yaml grants.

The ReplicaSet controller, the scheduler and a hollow node are real: pods are created,
scheduled, become Ready and are removed by the controllers, not by the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from integrations.errors import (
    ClusterAccessError,
    InvalidSpecError,
    NamespaceMissingError,
    VersionNotReadyError,
)
from integrations.kubernetes.api import DELETION_COST, KubeAccess
from integrations.kubernetes.runtime import KubernetesRuntime
from integrations.kubernetes.traffic import KubernetesTraffic
from schemas.models import (
    DrainInput,
    EnsureFrontendInput,
    Instance,
    StartVersionInput,
    TrafficInput,
    VersionRef,
)
from schemas.settings import Cluster
from tests.support.kube_fixtures import KubeEnv

pytestmark = pytest.mark.integration


@pytest.fixture
def kube(kube_env: KubeEnv) -> KubeEnv:
    return kube_env

ENV_KEY = "shop-prod-k8s"
READY_SECONDS = 60


def runtime_for(kube: KubeEnv) -> KubernetesRuntime:
    settings = Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig),
                       image_pull_secrets=["regcred"])
    runtime = KubernetesRuntime.from_cluster(settings, name="k8s")
    runtime.poll_seconds = 0.1
    return runtime


def ref(kube: KubeEnv, version: int, namespace: str = "") -> VersionRef:
    return VersionRef(app="shop", env_key=ENV_KEY, cluster="k8s", version=version,
                      namespace=namespace or kube.namespace)


def spec(kube: KubeEnv, version: int, replicas: int, namespace: str = "",
         memory: str = "64Mi", cpu: str = "10m") -> StartVersionInput:
    return StartVersionInput(version=ref(kube, version, namespace),
                             image=f"reg.test/shop:{version}.0", replicas=replicas,
                             ports=[8080, 9090], env_vars={"MODE": "prod"}, cpu=cpu,
                             memory=memory, health_path="/healthz")


def started(kube: KubeEnv, runtime: KubernetesRuntime, version: int,
            replicas: int) -> list[Instance]:
    runtime.start_version(spec(kube, version, replicas))
    return runtime.wait_ready(ref(kube, version), replicas, 8080, "/healthz", READY_SECONDS)


def pods(kube: KubeEnv, version: int) -> list[dict[str, Any]]:
    """The version's live pods (not terminating), read with the admin's rights."""
    return kube.server.pods(kube.namespace, f"slipway.env={ENV_KEY},version={version}")


def name_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["name"])


def traffic_of(kube: KubeEnv, version: int) -> list[str]:
    return sorted(p["metadata"]["labels"]["traffic"] for p in pods(kube, version))


def deployment(kube: KubeEnv, name: str) -> dict[str, Any] | None:
    return kube.server.find(f"/apis/apps/v1/namespaces/{kube.namespace}/deployments/{name}")


def eventually(check: Callable[[], Any], seconds: float = 30) -> None:
    """Controllers act on their own time: wait, bounded, until ``check`` holds."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds}s: {check}"
        time.sleep(0.1)


def test_the_server_is_real_and_its_version_accepted(kube: KubeEnv) -> None:
    access = KubeAccess(Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig)), "k8s")
    assert access.server_version == kube.server.version == "v1.20.2+pod-deletion-cost"


def test_a_version_is_a_labelled_deployment_made_ready_by_the_controllers(
        kube: KubeEnv) -> None:
    runtime = runtime_for(kube)
    instances = started(kube, runtime, 3, 2)

    assert instances == [Instance(name=f"v3-{i}", version=3, address="shop", port=8080)
                         for i in range(2)]
    found = deployment(kube, "shop-v3")
    assert found is not None
    labels = {"app": "shop", "version": "3", "slipway.env": ENV_KEY}
    assert found["metadata"]["labels"] == {**labels, "app.kubernetes.io/managed-by": "slipway"}
    assert found["spec"]["selector"] == {"matchLabels": labels}
    template = found["spec"]["template"]
    assert template["metadata"]["labels"] == {**labels, "traffic": "on"}
    assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    container = template["spec"]["containers"][0]
    assert container["image"] == "reg.test/shop:3.0"
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "64Mi"},
                                      "limits": {"cpu": "10m", "memory": "64Mi"}}
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert [p["containerPort"] for p in container["ports"]] == [8080, 9090]
    # The ReplicaSet controller made the pods and the hollow node runs them.
    assert [p["status"]["phase"] for p in pods(kube, 3)] == ["Running", "Running"]
    assert runtime.versions(ENV_KEY, kube.namespace) == [3]
    assert runtime.versions("other-env", kube.namespace) == []
    assert runtime.check_health(ref(kube, 3), 2, 8080, "/healthz") == []

    # Idempotent: starting again changes nothing (same generation); a new count scales.
    runtime.start_version(spec(kube, 3, 2))
    assert kube.server.get(f"/apis/apps/v1/namespaces/{kube.namespace}/deployments/shop-v3")[
        "metadata"]["generation"] == 1
    assert len(started(kube, runtime, 3, 4)) == 4
    assert len(pods(kube, 3)) == 4


def test_readiness_is_the_kubelets_probe_of_the_health_path(kube: KubeEnv) -> None:
    """The hollow node's kubelet probes the pods' health path (the tests' health server
    answers for the pods): a failing probe keeps the version from ready, a passing one
    makes it ready, and health reports what the kubelet saw."""
    runtime = runtime_for(kube)
    sick = f"/sick-{kube.namespace}"
    kube.server.health.failing.add(sick)
    try:
        runtime.start_version(spec(kube, 5, 2).model_copy(update={"health_path": sick}))
        with pytest.raises(VersionNotReadyError, match=r"progress deadline .* 0/2 replicas"):
            runtime.wait_ready(ref(kube, 5), 2, 8080, sick, 8)
        problems = runtime.check_health(ref(kube, 5), 2, 8080, sick)
        assert len([p for p in problems if p.endswith("not ready")]) == 2, problems
    finally:
        kube.server.health.failing.discard(sick)
    assert len(runtime.wait_ready(ref(kube, 5), 2, 8080, sick, READY_SECONDS)) == 2
    assert runtime.check_health(ref(kube, 5), 2, 8080, sick) == []


def test_replicas_outside_1_to_24_are_refused_before_any_api_call(kube: KubeEnv) -> None:
    runtime = runtime_for(kube)
    for replicas in (0, 25):
        with pytest.raises(InvalidSpecError, match="replicas must be 1–24"):
            runtime.start_version(spec(kube, 1, replicas))
    assert deployment(kube, "shop-v1") is None


def test_the_service_is_one_cluster_ip_per_app_selecting_traffic_on(kube: KubeEnv) -> None:
    traffic = KubernetesTraffic(runtime_for(kube))
    frontend = EnsureFrontendInput(env_key=ENV_KEY, lb_port=0, cluster="k8s", app="shop",
                                   namespace=kube.namespace, ports=[8080])
    traffic.ensure_frontend(frontend)
    traffic.ensure_frontend(frontend)  # idempotent

    def service() -> dict[str, Any]:
        return kube.server.get(f"/api/v1/namespaces/{kube.namespace}/services/shop")["spec"]

    assert service()["type"] == "ClusterIP"
    assert service()["clusterIP"].startswith("10.96.")  # allocated by the real server
    assert service()["selector"] == {"app": "shop", "traffic": "on"}
    assert [(p["port"], p["targetPort"]) for p in service()["ports"]] == [(8080, 8080)]
    traffic.ensure_frontend(frontend.model_copy(update={"ports": [8080, 9090]}))
    assert [p["port"] for p in service()["ports"]] == [8080, 9090]


def test_drain_flips_the_leaving_pods_and_the_scale_down_removes_exactly_them(
        kube: KubeEnv) -> None:
    """The real ReplicaSet controller picks the pods a scale-down deletes: the drained ones,
    by their pod-deletion cost. Three rounds, each from 6 pods, so luck cannot pass it."""
    runtime = runtime_for(kube)
    traffic = KubernetesTraffic(runtime, poll_seconds=0.05)
    for keep in (4, 2, 1):
        instances = started(kube, runtime, 1, 6)
        assert traffic_of(kube, 1) == ["on"] * 6
        traffic.drain(DrainInput(env_key=ENV_KEY, version=1, keep=keep, timeout_seconds=0.1,
                                 cluster="k8s", namespace=kube.namespace))
        before = pods(kube, 1)
        drained = {name_of(p) for p in before if p["metadata"]["labels"]["traffic"] == "off"}
        assert len(drained) == 6 - keep
        for pod in before:
            cost = pod["metadata"].get("annotations", {}).get(DELETION_COST)
            assert cost == ("-1000" if name_of(pod) in drained else None)

        instances = started(kube, runtime, 1, keep)
        remaining = {name_of(p) for p in pods(kube, 1)}
        assert len(remaining) == keep and not remaining & drained, (remaining, drained)
        traffic.add(TrafficInput(env_key=ENV_KEY, instances=instances, cluster="k8s",
                                 namespace=kube.namespace))
        assert traffic_of(kube, 1) == ["on"] * keep


def test_add_puts_drained_pods_back_and_remove_takes_them_out_at_once(kube: KubeEnv) -> None:
    runtime = runtime_for(kube)
    traffic = KubernetesTraffic(runtime)
    instances = started(kube, runtime, 2, 3)
    out = DrainInput(env_key=ENV_KEY, version=2, timeout_seconds=60, cluster="k8s",
                     namespace=kube.namespace)
    began = time.monotonic()
    traffic.remove(out)
    assert time.monotonic() - began < 30  # no drain wait on the undo path
    assert traffic_of(kube, 2) == ["off"] * 3

    back = TrafficInput(env_key=ENV_KEY, instances=instances, cluster="k8s",
                        namespace=kube.namespace)
    traffic.add(back)
    traffic.add(back)  # idempotent
    assert traffic_of(kube, 2) == ["on"] * 3
    assert all(DELETION_COST not in p["metadata"].get("annotations", {}) for p in pods(kube, 2))


def test_stop_scales_to_zero_and_remove_deletes_the_deployment(kube: KubeEnv) -> None:
    runtime = runtime_for(kube)
    started(kube, runtime, 7, 2)
    runtime.stop_version(ref(kube, 7))
    assert (deployment(kube, "shop-v7") or {})["spec"]["replicas"] == 0
    eventually(lambda: pods(kube, 7) == [])
    assert runtime.versions(ENV_KEY, kube.namespace) == [7]
    runtime.remove_version(ref(kube, 7))
    runtime.remove_version(ref(kube, 7))  # already gone is fine
    runtime.stop_version(ref(kube, 7))
    assert deployment(kube, "shop-v7") is None
    assert runtime.versions(ENV_KEY, kube.namespace) == []


def test_a_quota_that_refuses_pods_fails_the_wait_fast_with_the_servers_reason(
        kube: KubeEnv) -> None:
    """An operator's ResourceQuota: the ReplicaSet cannot create the pods, and the
    Deployment says so (ReplicaFailure) long before the progress deadline."""
    kube.server.send("POST", f"/api/v1/namespaces/{kube.namespace}/resourcequotas", {
        "metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2"}}})
    runtime = runtime_for(kube)
    runtime.start_version(spec(kube, 1, 3))
    began = time.monotonic()
    with pytest.raises(VersionNotReadyError, match="exceeded quota"):
        runtime.wait_ready(ref(kube, 1), 3, 8080, "/healthz", 120)
    assert time.monotonic() - began < 60


def test_a_missing_namespace_is_permanent_and_never_created(kube: KubeEnv,
                                                           lane_kube: KubeEnv) -> None:
    """The release account reads only the namespaces rbac.yaml granted it, so the server
    cannot tell it a namespace is missing: the error says both possible causes. An account
    that may read namespaces (the lanes' one) is told it is missing."""
    missing = f"{kube.namespace}-nowhere"
    with pytest.raises(ClusterAccessError) as refused:
        runtime_for(kube).start_version(spec(kube, 1, 1, namespace=missing))
    assert f"cluster 'k8s', namespace '{missing}'" in str(refused.value)
    assert "Either the namespace does not exist" in str(refused.value)
    assert "rbac.yaml was not applied" in str(refused.value)

    runtime = runtime_for(lane_kube)
    traffic = KubernetesTraffic(runtime)
    with pytest.raises(NamespaceMissingError) as absent:
        runtime.start_version(spec(kube, 1, 1, namespace=missing))
    assert f"cluster 'k8s', namespace '{missing}': the namespace does not exist" in \
        str(absent.value)
    with pytest.raises(NamespaceMissingError):
        traffic.ensure_frontend(EnsureFrontendInput(
            env_key=ENV_KEY, lb_port=0, cluster="k8s", app="shop", namespace=missing))
    assert kube.server.find(f"/api/v1/namespaces/{missing}") is None


def test_rbac_refuses_what_the_manifests_do_not_grant(kube: KubeEnv) -> None:
    """The real API server, with deploy/kubernetes/rbac.yaml: a namespace the account was not
    granted is refused (a permanent error naming the cluster and namespace), and so is every
    verb rbac.yaml leaves out."""
    locked = f"{kube.namespace}-locked"
    kube.server.create_namespace(locked)
    try:
        runtime = runtime_for(kube)
        with pytest.raises(ClusterAccessError) as refused:
            runtime.start_version(spec(kube, 1, 1, namespace=locked))
        message = str(refused.value)
        assert f"cluster 'k8s', namespace '{locked}'" in message and "403" in message
        assert 'User "system:serviceaccount:slipway:slipway-worker" cannot' in message
        with pytest.raises(ClusterAccessError):
            runtime.versions(ENV_KEY, locked)

        traffic = KubernetesTraffic(runtime)
        traffic.ensure_frontend(EnsureFrontendInput(
            env_key=ENV_KEY, lb_port=0, cluster="k8s", app="shop", namespace=kube.namespace,
            ports=[8080]))
        core, apps = runtime.kube.core, runtime.kube.apps
        outside = {
            "delete a service": lambda: core.delete_namespaced_service("shop", kube.namespace),
            "delete a pod": lambda: core.delete_collection_namespaced_pod(kube.namespace),
            "read secrets": lambda: core.list_namespaced_secret(kube.namespace),
            "list namespaces": lambda: core.list_namespace(),
            "list deployments elsewhere": lambda: apps.list_namespaced_deployment("default"),
        }
        for what, call in outside.items():
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403, what
    finally:
        kube.server.delete_namespace(locked)


def test_an_invalid_quantity_is_refused_with_the_servers_message(kube: KubeEnv) -> None:
    runtime = runtime_for(kube)
    with pytest.raises(InvalidSpecError) as invalid:
        runtime.start_version(spec(kube, 1, 1, memory="lots"))
    assert "quantities must match the regular expression" in str(invalid.value)
    assert f"namespace '{kube.namespace}'" in str(invalid.value)
    assert deployment(kube, "shop-v1") is None


def test_a_hollow_node_that_died_is_started_again_and_runs_pods(kube: KubeEnv) -> None:
    """kubemark's hollow kubelet (1.20) can crash ("concurrent map writes"): the fixtures
    start it again, so one crash fails no later test."""
    [node] = [process for name, process in kube.server._processes if name == "hollow-node"]
    node.kill()  # SIGKILL, by its pid
    node.wait(10)
    assert kube.server.revive_node()
    assert not kube.server.revive_node()  # alive now: nothing to do
    runtime = runtime_for(kube)
    assert len(started(kube, runtime, 4, 1)) == 1
    assert [p["status"]["phase"] for p in pods(kube, 4)] == ["Running"]
