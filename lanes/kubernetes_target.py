"""Lane apps on a Kubernetes cluster: a namespace per lane, named after the lane.

The namespace carries ``slipway.lane=<lane>`` and is the lane's scope: every app of the lane
runs in it as one Deployment per version (``KubernetesRuntime``) behind a Service named after
the app (``KubernetesTraffic``), reachable in-cluster at ``http://<app>.<lane>.svc:<port>/``.
A namespace that exists without our label belongs to someone else: it is never adopted, so it
is never deleted with a lane. See lanes/target.py for the contract.

The worker's account needs cluster-wide rights for this (namespaces come and go with lanes):
deploy/kubernetes/rbac-lanes.yaml grants them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from integrations.errors import ClusterUnavailableError, PermanentRuntimeError
from integrations.kubernetes.api import LABEL_MANAGED_BY, REQUEST_TIMEOUT, KubeAccess
from integrations.kubernetes.runtime import KubernetesRuntime
from integrations.kubernetes.traffic import KubernetesTraffic
from integrations.protocols import Progress
from lanes.target import LABEL_LANE, LaneDeployment, lane_env_key
from schemas.models import (
    DrainInput,
    EnsureFrontendInput,
    StartVersionInput,
    TrafficInput,
    VersionRef,
)

T = TypeVar("T")


class ForeignNamespaceError(PermanentRuntimeError):
    """A namespace named like the lane exists but was not created by Slipway for that lane."""


def namespace_body(lane: str) -> dict[str, Any]:
    """The lane's namespace: named after the lane, labelled so it is recognisably ours."""
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": lane,
                         "labels": {LABEL_LANE: lane, LABEL_MANAGED_BY: "slipway"}}}


def _labels(namespace: client.V1Namespace) -> dict[str, str]:
    return (namespace.metadata.labels if namespace.metadata else None) or {}


def terminating(namespace: client.V1Namespace) -> bool:
    """The namespace is being deleted: the API server finishes that on its own."""
    deleting = namespace.metadata is not None and namespace.metadata.deletion_timestamp
    return bool(deleting) or (namespace.status is not None
                              and namespace.status.phase == "Terminating")


class KubernetesLaneTarget:
    """Lane apps as Deployments and Services in a namespace of the lane's own."""

    def __init__(self, runtime: KubernetesRuntime, deadline_seconds: float = 300.0,
                 drain_seconds: float = 10.0, namespace_timeout_seconds: float = 60.0) -> None:
        self.runtime = runtime
        self.traffic = KubernetesTraffic(runtime, poll_seconds=runtime.poll_seconds)
        self.kube: KubeAccess = runtime.kube
        self.deadline_seconds = deadline_seconds
        # How long a retired version's pods stay out of the Service before they are deleted,
        # so requests already in flight can finish.
        self.drain_seconds = drain_seconds
        self.namespace_timeout_seconds = namespace_timeout_seconds

    @property
    def cluster(self) -> str:
        """The cluster's name in settings (SLIPWAY_CLUSTERS), used in details and messages."""
        return self.kube.name

    # -- namespaces -------------------------------------------------------------------------

    def create_namespace(self, lane: str) -> dict[str, Any]:
        """Create the lane's namespace, or adopt the one an earlier attempt created."""
        existing = self._read_namespace(lane)
        if existing is None:
            body = namespace_body(lane)
            created = self.kube.call(
                f"create namespace {lane}", lane,
                lambda: self._absent_is_none(lambda: self.kube.core.create_namespace(
                    client.V1Namespace.model_validate(body), _request_timeout=REQUEST_TIMEOUT,
                    _preload_content=False), conflict=True), self.cluster)
            if created is None:
                # A conflict: someone created it between our read and our create. Judge
                # whatever is there now, exactly as if it had been there before.
                existing = self._read_namespace(lane)
                if existing is None:
                    raise ClusterUnavailableError(
                        f"cluster {self.cluster!r}: namespace {lane!r} came and went while "
                        "it was being created; retrying")
        if existing is not None:
            self._require_ours(existing, lane, "use it for the lane")
            if terminating(existing):
                # Retryable: the previous lane of this name is still going away.
                raise ClusterUnavailableError(
                    f"cluster {self.cluster!r}: namespace {lane!r} of an earlier lane "
                    f"{lane!r} is still terminating; retrying until it is gone")
        return {"runtime": "kubernetes", "cluster": self.cluster, "namespace": lane,
                "created": True}

    def delete_namespace(self, detail: dict[str, Any]) -> None:
        """Delete the lane's namespace (and so everything in it); already gone is fine.

        Waits up to ``namespace_timeout_seconds`` for it to be gone; one still terminating
        then is accepted, since the API server completes the deletion on its own.
        """
        if not detail.get("created"):
            return
        name = str(detail["namespace"])
        existing = self._read_namespace(name)
        if existing is None:
            return
        # The ledger may be older than the namespace: never delete one that is not the lane's.
        self._require_ours(existing, name, "delete it")
        if not terminating(existing):
            self.kube.call(f"delete namespace {name}", name,
                           lambda: self._absent_is_none(
                               lambda: self.kube.core.delete_namespace(
                                   name, propagation_policy="Background",
                                   _request_timeout=REQUEST_TIMEOUT, _preload_content=False)),
                           self.cluster)
        deadline = time.monotonic() + self.namespace_timeout_seconds
        while (current := self._read_namespace(name)) is not None:
            if time.monotonic() >= deadline:
                if terminating(current):
                    return
                raise ClusterUnavailableError(
                    f"cluster {self.cluster!r}: namespace {name!r} still exists "
                    f"{self.namespace_timeout_seconds:.0f}s after it was deleted")
            time.sleep(self.runtime.poll_seconds)

    def lane_namespaces(self) -> list[str]:
        """Lanes that have a namespace on this cluster (by its ``slipway.lane`` label)."""
        return sorted(self.lane_namespaces_created())

    def lane_namespaces_created(self) -> dict[str, datetime | None]:
        """Lane namespaces with their creation time (None when the API gives none)."""
        found: client.V1NamespaceList = self.kube.call(
            "list lane namespaces", "", lambda: self.kube.core.list_namespace(
                label_selector=LABEL_LANE, _request_timeout=REQUEST_TIMEOUT), self.cluster)
        return {_labels(item)[LABEL_LANE]: item.metadata.creation_timestamp
                for item in found.items
                if item.metadata and _labels(item).get(LABEL_LANE) == item.metadata.name}

    # -- apps -------------------------------------------------------------------------------

    def deploy(self, want: LaneDeployment, progress: Progress | None = None) -> dict[str, Any]:
        """Run ``want`` as a Deployment in the lane's namespace until ready, behind the app's
        Service there."""
        env_key = lane_env_key(want.app, want.lane)
        ports = want.ports or [want.port]
        ref = VersionRef(app=want.app, env_key=env_key, cluster=self.cluster,
                         version=want.version, namespace=want.lane)
        self.runtime.start_version(
            StartVersionInput(version=ref, image=want.image, replicas=1, ports=ports,
                              env_vars=want.env_vars, cpu=want.cpu, memory=want.memory,
                              health_path=want.health_path, labels={LABEL_LANE: want.lane}),
            progress)
        instances = self.runtime.wait_ready(ref, 1, want.port, want.health_path,
                                            self.deadline_seconds, progress)
        self.traffic.ensure_frontend(EnsureFrontendInput(
            env_key=env_key, lb_port=want.port, health_path=want.health_path,
            cluster=self.cluster, app=want.app, namespace=want.lane, ports=ports))
        # New pods start with traffic=on; this also puts back a retry's pods that a failed
        # retire had already drained.
        self.traffic.add(TrafficInput(env_key=env_key, instances=instances,
                                      cluster=self.cluster, namespace=want.lane))
        return {"runtime": "kubernetes", "cluster": self.cluster, "namespace": want.lane,
                "env_key": env_key, "image": want.image, "version": want.version,
                "service": want.app, "port": want.port,
                "url": f"http://{want.app}.{want.lane}.svc:{want.port}/"}

    def retire(self, detail: dict[str, Any], app: str) -> None:
        """Take the version's pods out of the Service, let in-flight requests finish, then
        delete its Deployment; the Service keeps serving the newer version."""
        ref = self._ref(detail, app)
        if not self.kube.namespace_exists(ref.namespace, ref.cluster):
            return  # the namespace went, and the version with it
        self.traffic.drain(DrainInput(env_key=ref.env_key, version=ref.version,
                                      timeout_seconds=self.drain_seconds, cluster=ref.cluster,
                                      namespace=ref.namespace))
        self.runtime.remove_version(ref)

    def remove(self, detail: dict[str, Any], app: str) -> None:
        """Delete the app's Service and every Deployment of its lane environment."""
        ref = self._ref(detail, app)
        namespace, service = ref.namespace, str(detail.get("service") or app)
        if not self.kube.namespace_exists(namespace, ref.cluster):
            return  # the namespace went, and the app with it
        self.kube.call_or_none(f"delete service {service}", namespace,
                               lambda: self.kube.core.delete_namespaced_service(
                                   service, namespace, _request_timeout=REQUEST_TIMEOUT,
                                   _preload_content=False), ref.cluster)
        # Every version, not only the ledger's: a redeploy that failed between starting the
        # new version and retiring the old one leaves a Deployment the ledger does not name.
        versions = set(self.runtime.versions(ref.env_key, namespace)) | {ref.version}
        for version in sorted(versions):
            self.runtime.remove_version(ref.model_copy(update={"version": version}))

    # -- helpers ----------------------------------------------------------------------------

    def _read_namespace(self, name: str) -> client.V1Namespace | None:
        """The namespace, or None when it does not exist."""
        return self.kube.call(f"read namespace {name}", name,
                              lambda: self._absent_is_none(
                                  lambda: self.kube.core.read_namespace(
                                      name, _request_timeout=REQUEST_TIMEOUT)),
                              self.cluster)

    @staticmethod
    def _absent_is_none(fn: Callable[[], T], conflict: bool = False) -> T | None:
        """Run an API call; 404 (and 409 when ``conflict``) gives None, as the caller expects
        absence (or a concurrent create), not a failure. Others go to KubeAccess's mapping."""
        try:
            return fn()
        except ApiException as error:
            if error.status == 404 or (conflict and error.status == 409):
                return None
            raise

    def _require_ours(self, namespace: client.V1Namespace, lane: str, action: str) -> None:
        if _labels(namespace).get(LABEL_LANE) != lane:
            raise ForeignNamespaceError(
                f"cluster {self.cluster!r}: namespace {lane!r} exists but is not lane {lane!r}'s "
                f"(it lacks the label {LABEL_LANE}={lane}), so Slipway will not {action}: "
                "it never adopts or deletes a namespace it did not create. Pick another lane "
                "name, or remove that namespace")

    def _ref(self, detail: dict[str, Any], app: str) -> VersionRef:
        # The ledger says where the version runs; older entries ran version 1.
        return VersionRef(app=app, env_key=str(detail["env_key"]),
                          cluster=str(detail.get("cluster") or self.cluster),
                          version=int(detail.get("version", 1)),
                          namespace=str(detail["namespace"]))
