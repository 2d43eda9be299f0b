"""KubernetesRuntime on faults the test control plane cannot give, against the kmock API
emulator (tests/support/kube.py): pods that crash-loop (the hollow node runs no containers),
a server too old to support, an API that cannot be reached. Plus what needs no server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from integrations.errors import (
    ClusterConfigError,
    ClusterUnavailableError,
    PermanentRuntimeError,
    VersionNotReadyError,
)
from integrations.kubernetes.api import unsupported_server
from integrations.kubernetes.runtime import KubernetesRuntime
from schemas.models import StartVersionInput, VersionRef
from schemas.settings import Cluster
from tests.support.kube import (
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


def runtime_for(kube: KubeCluster) -> KubernetesRuntime:
    runtime = KubernetesRuntime.from_cluster(
        Cluster(runtime="kubernetes", kubeconfig=str(kube.kubeconfig)), name="k8s")
    runtime.poll_seconds = 0.05
    return runtime


def ref(version: int) -> VersionRef:
    return VersionRef(app="shop", env_key=ENV_KEY, cluster="k8s", version=version, namespace=NS)


def spec(version: int, replicas: int) -> StartVersionInput:
    return StartVersionInput(version=ref(version), image=f"reg.test/shop:{version}.0",
                             replicas=replicas, ports=[8080], memory="64Mi",
                             health_path="/healthz")


async def test_health_reports_crash_loops_restarts_and_missing_replicas(
        kube: KubeCluster) -> None:
    runtime = runtime_for(kube)
    await run(runtime.start_version, spec(4, 2))
    await run(runtime.wait_ready, ref(4), 2, 8080, "/healthz", 10)
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


async def test_a_server_older_than_1_22_is_refused_before_anything_is_created(
        kube: KubeCluster) -> None:
    kube.emulator.git_version = "v1.20.2"
    runtime = runtime_for(kube)
    with pytest.raises(ClusterConfigError) as refused:
        await run(runtime.start_version, spec(1, 1))
    message = str(refused.value)
    assert "cluster 'k8s'" in message and "Kubernetes v1.20.2" in message
    assert "needs 1.22 or newer" in message and "pod-deletion-cost" in message
    assert kube.emulator.deployment(NS, "shop-v1") is None


@pytest.mark.parametrize("code", [500, 429])
async def test_an_api_answering_500_or_429_is_retryable_and_says_so(
        kube: KubeCluster, code: int) -> None:
    runtime = runtime_for(kube)
    await run(runtime.versions, ENV_KEY, NS)  # the version check is done
    kube.emulator.faults.append(code)
    with pytest.raises(ClusterUnavailableError) as failed:
        await run(runtime.versions, ENV_KEY, NS)
    assert not isinstance(failed.value, PermanentRuntimeError)
    assert f"cluster 'k8s', namespace '{NS}'" in str(failed.value)
    assert str(code) in str(failed.value) and "injected fault" in str(failed.value)
    assert await run(runtime.versions, ENV_KEY, NS) == []  # and the next call goes through


@pytest.mark.parametrize(("version", "supported"), [
    ("v1.22.0", True), ("v1.30.4-gke.1", True), ("v1.28.3+k3s1", True), ("v2.0.0", True),
    ("v1.21.14", False), ("v1.20.2", False), ("v1.19.2+pod-deletion-cost", False),
    ("v1.20.2+pod-deletion-cost", True), ("v1.21.0+eks.pod-deletion-cost", True),
    ("v1.20.2+pod-deletion-costly", False), ("nonsense", False),
])
def test_supported_servers(version: str, supported: bool) -> None:
    assert (unsupported_server(version) is None) == supported


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
