"""Pytest fixtures around the test control plane (tests/support/kube_server.py): the
session's server, and per test an environment namespace granted as deploy/kubernetes says,
with a kubeconfig acting as the worker's service account."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.kube_server import MANIFESTS, SLIPWAY_NAMESPACE, KubeServer, kube_server


@pytest.fixture(scope="session")
def real_kube(request: pytest.FixtureRequest) -> Iterator[KubeServer]:
    """The session's control plane, with deploy/kubernetes/serviceaccount.yaml installed."""
    with kube_server() as server:
        # Printed past pytest's capture: the run's output names the server it tested.
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\nkubernetes: a real control plane, {server.version}, at {server.url} "
                  "(tests/support/kube_server.py)", flush=True)
        yield server


def revive_node(server: KubeServer) -> None:
    """The hollow node back before a test, if it died under an earlier one (said on the
    run's output: a kubemark crash, not the test's doing)."""
    if server.revive_node():
        print(f"\nkubernetes: the hollow node had exited and was started again "
              f"(see {server.root / 'logs' / 'hollow-node.log'})", flush=True)


@dataclass
class KubeEnv:
    """One test's environment namespace on the real server, granted by rbac.yaml, and a
    kubeconfig that acts as the worker's service account (nothing more)."""

    server: KubeServer
    namespace: str
    kubeconfig: Path
    token: str


_counter = iter(range(1, 10_000))


def unique(prefix: str) -> str:
    """A name no other test of the session uses (namespaces outlive a test briefly)."""
    return f"{prefix}-{os.getpid() % 1000}-{next(_counter)}"


@pytest.fixture(scope="session")
def worker_token(real_kube: KubeServer) -> str:
    """deploy/kubernetes/serviceaccount.yaml installed once; its token."""
    return real_kube.install_worker_account()


@pytest.fixture
def kube_env(real_kube: KubeServer, worker_token: str, tmp_path: Path) -> Iterator[KubeEnv]:
    """A fresh namespace labelled and granted as deploy/kubernetes/README.md says."""
    token = worker_token
    revive_node(real_kube)
    namespace = unique("shop")
    real_kube.create_namespace(namespace, {"slipway.env": namespace})
    real_kube.grant_environment(namespace)
    try:
        yield KubeEnv(real_kube, namespace, real_kube.kubeconfig(tmp_path / "kubeconfig", token),
                      token)
    finally:
        real_kube.delete_namespace(namespace)


# Lanes act as a second copy of the worker's account, installed in a namespace of its own and
# bound by rbac-lanes.yaml too: its cluster-wide role would otherwise hide a right missing
# from rbac.yaml in the release tests.
LANES_ACCOUNT_NAMESPACE = "slipway-lanes"


@pytest.fixture(scope="session")
def lanes_token(real_kube: KubeServer) -> str:
    """The lanes' copy of the account, bound by rbac-lanes.yaml, installed once; its token."""
    token = real_kube.install_worker_account(LANES_ACCOUNT_NAMESPACE)
    real_kube.apply(MANIFESTS / "rbac-lanes.yaml", replace={
        f"namespace: {SLIPWAY_NAMESPACE}": f"namespace: {LANES_ACCOUNT_NAMESPACE}"})
    return token


@pytest.fixture
def lane_kube(real_kube: KubeServer, lanes_token: str, tmp_path: Path) -> Iterator[KubeEnv]:
    """A QA environment namespace granted by rbac.yaml, for the lanes' account; every lane
    namespace is deleted at the end."""
    token = lanes_token
    revive_node(real_kube)
    namespace = unique("shop-test")
    real_kube.create_namespace(namespace, {"slipway.env": namespace})
    real_kube.grant_environment(namespace, LANES_ACCOUNT_NAMESPACE)
    try:
        kubeconfig = real_kube.kubeconfig(tmp_path / "lanes.kubeconfig", token)
        yield KubeEnv(real_kube, namespace, kubeconfig, token)
    finally:
        real_kube.delete_namespace(namespace)
        for lane in real_kube.get("/api/v1/namespaces", labelSelector="slipway.lane")["items"]:
            real_kube.delete_namespace(lane["metadata"]["name"])
