"""KubernetesRuntime + KubernetesTraffic against the kmock API emulator, over HTTP with the
official client and a kubeconfig, as a worker would use them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from integrations.errors import (
    ClusterAccessError,
    ClusterConfigError,
    ClusterUnavailableError,
    InvalidSpecError,
    NamespaceMissingError,
    PermanentRuntimeError,
    VersionNotReadyError,
)
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
from tests.support.kube import (
    SERVICES,
    KubeCluster,
    kube_fixture,  # noqa: F401  (the `kube` fixture)
    write_kubeconfig,
)

T = TypeVar("T")
NS = "shop-prod"
ENV_KEY = "shop-prod-k8s"


async def run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """The client is synchronous and the emulator serves on this loop: call from a thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def runtime_for(kube: KubeCluster, **cluster: Any) -> KubernetesRuntime:
    settings = Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig),
                       image_pull_secrets=["regcred"], **cluster)
    runtime = KubernetesRuntime.from_cluster(settings, name="k8s")
    runtime.poll_seconds = 0.05
    return runtime


def ref(version: int, namespace: str = NS) -> VersionRef:
    return VersionRef(app="shop", env_key=ENV_KEY, cluster="k8s", version=version,
                      namespace=namespace)


def spec(version: int, replicas: int, namespace: str = NS,
         memory: str = "64Mi") -> StartVersionInput:
    return StartVersionInput(version=ref(version, namespace), image=f"reg.test/shop:{version}.0",
                             replicas=replicas, ports=[8080, 9090], env_vars={"MODE": "prod"},
                             cpu="250m", memory=memory, health_path="/healthz")


def traffic_of(kube: KubeCluster, deployment: str) -> list[str]:
    return sorted(p["metadata"]["labels"]["traffic"]
                  for p in kube.emulator.pods_of(NS, deployment))


async def started(runtime: KubernetesRuntime, version: int, replicas: int) -> list[Instance]:
    await run(runtime.start_version, spec(version, replicas))
    return await run(runtime.wait_ready, ref(version), replicas, 8080, "/healthz", 10)


async def test_a_version_is_a_labelled_deployment_and_ready_from_its_status(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    instances = await started(runtime, 3, 2)

    assert instances == [Instance(name=f"v3-{i}", version=3, address="shop", port=8080)
                         for i in range(2)]
    deployment = kube.emulator.deployment(NS, "shop-v3")
    assert deployment is not None
    labels = {"app": "shop", "version": "3", "slipway.env": ENV_KEY}
    assert deployment["metadata"]["labels"] == {**labels,
                                                "app.kubernetes.io/managed-by": "slipway"}
    assert deployment["spec"]["selector"] == {"matchLabels": labels}
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"] == {**labels, "traffic": "on"}
    assert template["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    container = template["spec"]["containers"][0]
    assert container["image"] == "reg.test/shop:3.0"
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "64Mi"},
                                      "limits": {"cpu": "250m", "memory": "64Mi"}}
    assert {"name": "MODE", "value": "prod"} in container["env"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert [p["containerPort"] for p in container["ports"]] == [8080, 9090]
    assert await run(runtime.versions, ENV_KEY, NS) == [3]
    assert await run(runtime.versions, "other-env", NS) == []
    assert await run(runtime.check_health, ref(3), 2, 8080, "/healthz") == []

    # Idempotent: starting again changes nothing; a new count scales.
    await run(runtime.start_version, spec(3, 2))
    assert kube.emulator.deployment(NS, "shop-v3")["metadata"]["generation"] == 1  # type: ignore[index]
    assert len(await started(runtime, 3, 4)) == 4
    assert [e for e in kube.emulator.log if e[0] == "scale"] == [("scale", "shop-v3", 2),
                                                                 ("scale", "shop-v3", 4)]


async def test_replicas_outside_1_to_24_are_refused_before_any_api_call(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    for replicas in (0, 25):
        with pytest.raises(InvalidSpecError, match="replicas must be 1–24"):
            await run(runtime.start_version, spec(1, replicas))
    assert kube.emulator.deployment(NS, "shop-v1") is None


async def test_the_service_is_one_cluster_ip_per_app_selecting_traffic_on(
        kube: KubeCluster) -> None:
    traffic = KubernetesTraffic(runtime_for(kube))
    frontend = EnsureFrontendInput(env_key=ENV_KEY, lb_port=0, cluster="k8s", app="shop",
                                   namespace=NS, ports=[8080])
    await run(traffic.ensure_frontend, frontend)
    await run(traffic.ensure_frontend, frontend)  # idempotent
    service = kube.emulator.live(SERVICES, NS)["shop"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {"app": "shop", "traffic": "on"}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8080, 8080)]

    await run(traffic.ensure_frontend, frontend.model_copy(update={"ports": [8080, 9090]}))
    service = kube.emulator.live(SERVICES, NS)["shop"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8080, 9090]


async def test_drain_flips_the_leaving_pods_and_the_scale_down_removes_exactly_them(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    traffic = KubernetesTraffic(runtime, poll_seconds=0.05)
    await started(runtime, 1, 5)
    assert traffic_of(kube, "shop-v1") == ["on"] * 5

    await run(traffic.drain, DrainInput(env_key=ENV_KEY, version=1, keep=2, timeout_seconds=0.2,
                                        cluster="k8s", namespace=NS))
    pods = kube.emulator.pods_of(NS, "shop-v1")
    drained = {p["metadata"]["name"] for p in pods if p["metadata"]["labels"]["traffic"] == "off"}
    assert len(drained) == 3
    for pod in pods:
        cost = pod["metadata"]["annotations"].get("controller.kubernetes.io/pod-deletion-cost")
        assert cost == ("-1000" if pod["metadata"]["name"] in drained else None)

    instances = await started(runtime, 1, 2)
    remaining = {p["metadata"]["name"] for p in kube.emulator.pods_of(NS, "shop-v1")}
    assert len(remaining) == 2 and not remaining & drained
    await run(traffic.add, TrafficInput(env_key=ENV_KEY, instances=instances, cluster="k8s",
                                        namespace=NS))
    assert traffic_of(kube, "shop-v1") == ["on", "on"]


async def test_add_puts_drained_pods_back_and_remove_takes_them_out_at_once(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    traffic = KubernetesTraffic(runtime)
    instances = await started(runtime, 2, 3)
    out = DrainInput(env_key=ENV_KEY, version=2, timeout_seconds=60, cluster="k8s",
                     namespace=NS)
    await asyncio.wait_for(run(traffic.remove, out), 5)  # no drain wait on the undo path
    assert traffic_of(kube, "shop-v2") == ["off"] * 3

    back = TrafficInput(env_key=ENV_KEY, instances=instances, cluster="k8s", namespace=NS)
    await run(traffic.add, back)
    await run(traffic.add, back)  # idempotent
    assert traffic_of(kube, "shop-v2") == ["on"] * 3
    assert all("controller.kubernetes.io/pod-deletion-cost" not in p["metadata"]["annotations"]
               for p in kube.emulator.pods_of(NS, "shop-v2"))


async def test_health_reports_crash_loops_restarts_and_missing_replicas(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    await started(runtime, 4, 2)
    kube.kubelet.fail_health("shop-v4")
    await asyncio.sleep(0.3)
    problems = await run(runtime.check_health, ref(4), 2, 8080, "/healthz")
    assert any("not ready" in p for p in problems)
    assert any("restarted 3×" in p for p in problems)
    assert any("CrashLoopBackOff" in p for p in problems)
    assert await run(runtime.check_health, ref(9), 2, 8080, "/healthz") == [
        "deployment shop-v9 does not exist"]


async def test_wait_ready_fails_fast_on_a_crash_loop_and_at_the_deadline(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    kube.kubelet.fail_health("shop-v5")
    await run(runtime.start_version, spec(5, 1))
    with pytest.raises(VersionNotReadyError, match="CrashLoopBackOff"):
        await run(runtime.wait_ready, ref(5), 1, 8080, "/healthz", 30)
    kube.kubelet.ready_after = 60
    await run(runtime.start_version, spec(6, 1))
    with pytest.raises(VersionNotReadyError, match="progress deadline"):
        await run(runtime.wait_ready, ref(6), 1, 8080, "/healthz", 0.3)


async def test_stop_scales_to_zero_and_remove_deletes_the_deployment(kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    await started(runtime, 7, 2)
    await run(runtime.stop_version, ref(7))
    assert kube.emulator.deployment(NS, "shop-v7")["spec"]["replicas"] == 0  # type: ignore[index]
    assert await run(runtime.versions, ENV_KEY, NS) == [7]
    await run(runtime.remove_version, ref(7))
    await run(runtime.remove_version, ref(7))  # already gone is fine
    await run(runtime.stop_version, ref(7))
    assert kube.emulator.deployment(NS, "shop-v7") is None
    assert await run(runtime.versions, ENV_KEY, NS) == []
    await asyncio.sleep(0.2)
    assert kube.emulator.pods_of(NS, "shop-v7") == []


async def test_a_missing_namespace_is_permanent_and_never_created(kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    traffic = KubernetesTraffic(runtime)
    with pytest.raises(NamespaceMissingError) as missing:
        await run(runtime.start_version, spec(1, 1, namespace="nowhere"))
    assert "cluster 'k8s'" in str(missing.value) and "'nowhere'" in str(missing.value)
    with pytest.raises(NamespaceMissingError):
        await run(traffic.ensure_frontend, EnsureFrontendInput(
            env_key=ENV_KEY, lb_port=0, cluster="k8s", app="shop", namespace="nowhere"))
    assert kube.emulator.live(SERVICES) == {} and kube.emulator.deployment("nowhere", "shop-v1") \
        is None
    assert "nowhere" not in kube.emulator.namespaces


async def test_a_forbidden_namespace_is_a_permanent_access_error(kube: KubeCluster) -> None:
    kube.emulator.create_namespace("locked")
    kube.emulator.forbidden.add("locked")
    runtime = runtime_for(kube)
    with pytest.raises(ClusterAccessError) as refused:
        await run(runtime.start_version, spec(1, 1, namespace="locked"))
    assert "cluster 'k8s', namespace 'locked'" in str(refused.value)
    assert "403" in str(refused.value)
    with pytest.raises(ClusterAccessError):
        await run(runtime.versions, ENV_KEY, "locked")


async def test_an_invalid_quantity_is_refused_with_the_api_message(kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    with pytest.raises(InvalidSpecError) as invalid:
        await run(runtime.start_version, spec(1, 1, memory="lots"))
    assert 'Invalid value: "lots"' in str(invalid.value)
    assert "namespace 'shop-prod'" in str(invalid.value)
    assert kube.emulator.deployment(NS, "shop-v1") is None


async def test_connection_failures_retry_and_bad_settings_do_not(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{closed}")
    runtime = KubernetesRuntime.from_cluster(Cluster(runtime="kubernetes",
                                                     kubeconfig=str(config)), name="k8s")
    with pytest.raises(ClusterUnavailableError) as unreachable:
        await run(runtime.versions, ENV_KEY, NS)
    assert not isinstance(unreachable.value, PermanentRuntimeError)
    broken = KubernetesRuntime.from_cluster(Cluster(
        runtime="kubernetes", kubeconfig=str(tmp_path / "missing"), context="prod"), name="k8s")
    with pytest.raises(ClusterConfigError, match="cluster 'k8s'.*missing.*'prod'"):
        await run(broken.versions, ENV_KEY, NS)


def test_inspect_image_keeps_a_digest_reference() -> None:
    runtime = KubernetesRuntime.from_cluster(Cluster(runtime="kubernetes"))
    digest = "sha256:" + "a" * 64
    assert runtime.inspect_image(f"reg.test/shop@{digest}").digest == digest
    assert runtime.inspect_image("reg.test/shop:1.0").digest == ""


DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"


def test_the_manifests_grant_the_least_rights_and_configure_an_in_cluster_runtime(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from schemas.settings import Settings

    role = next(yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text()))
    rules = {(group, resource): sorted(rule["verbs"])
             for rule in role["rules"] for group in rule["apiGroups"]
             for resource in rule["resources"]}
    assert rules == {
        ("apps", "deployments"): ["create", "delete", "get", "list", "patch"],
        ("apps", "deployments/scale"): ["get", "patch"],
        ("", "services"): ["create", "get", "patch"],
        ("", "pods"): ["get", "list", "patch"],
        ("", "namespaces"): ["get"],
    }
    config_map = yaml.safe_load((DEPLOY / "configmap.yaml").read_text())
    for key, value in config_map["data"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    cluster = settings.clusters[settings.default_cluster]
    assert cluster.runtime == "kubernetes" and cluster.in_cluster
    worker = yaml.safe_load((DEPLOY / "worker.yaml").read_text())
    assert worker["spec"]["template"]["spec"]["serviceAccountName"] == "slipway-worker"
