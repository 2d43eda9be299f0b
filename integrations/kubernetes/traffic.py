"""``TrafficRouter`` for Kubernetes: the app's Service and the ``traffic`` label of its pods.

The Service selects ``app`` + ``traffic=on``, so traffic follows the replica ratio of the
versions. Draining a pod flips its label to ``traffic=off`` (it leaves the Service's endpoints:
no new connections, in-flight ones finish) and gives it the lowest pod-deletion cost, so the
scale-down that follows (``start_version``/``remove_version``) removes exactly the drained pods.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from kubernetes import client

from integrations.kubernetes.api import (
    DELETION_COST,
    DRAINED_COST,
    LABEL_APP,
    LABEL_ENV,
    LABEL_MANAGED_BY,
    LABEL_TRAFFIC,
    REQUEST_TIMEOUT,
    pod_ready,
    version_selector,
)
from integrations.kubernetes.runtime import KubernetesRuntime
from integrations.protocols import Progress
from schemas.models import DrainInput, EnsureFrontendInput, TrafficInput

TRAFFIC_ON = {"metadata": {"labels": {LABEL_TRAFFIC: "on"},
                           "annotations": {DELETION_COST: None}}}
TRAFFIC_OFF = {"metadata": {"labels": {LABEL_TRAFFIC: "off"},
                            "annotations": {DELETION_COST: DRAINED_COST}}}


def service_body(data: EnsureFrontendInput) -> dict[str, Any]:
    """One ClusterIP Service per app (seed 004's default), ports from the environment."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": data.app,
                     "labels": {LABEL_APP: data.app, LABEL_ENV: data.env_key,
                                LABEL_MANAGED_BY: "slipway"}},
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_APP: data.app, LABEL_TRAFFIC: "on"},
            "ports": [{"name": f"tcp-{port}", "port": port, "targetPort": port,
                       "protocol": "TCP"} for port in data.ports],
        },
    }


def _labels(pod: client.V1Pod) -> dict[str, str]:
    return (pod.metadata.labels if pod.metadata else None) or {}


def _draining(pod: client.V1Pod) -> bool:
    annotations = (pod.metadata.annotations if pod.metadata else None) or {}
    return annotations.get(DELETION_COST) == DRAINED_COST


def keep_order(pods: list[client.V1Pod]) -> list[client.V1Pod]:
    """Pods in the order they are kept in rotation: serving and ready ones first, then the
    oldest. Stable, so a retried drain picks the same pods."""
    return sorted(pods, key=lambda p: (_labels(p).get(LABEL_TRAFFIC) != "on", _draining(p),
                                       not pod_ready(p)))


class KubernetesTraffic:
    """Steers traffic with the Service selector and per-pod ``traffic`` labels."""

    def __init__(self, runtime: KubernetesRuntime, poll_seconds: float = 0.5) -> None:
        self.runtime = runtime
        self.kube = runtime.kube
        self.poll_seconds = poll_seconds

    def ensure_frontend(self, data: EnsureFrontendInput) -> None:
        """Create the app's Service, or bring its selector and ports up to date."""
        body = service_body(data)
        name, namespace = data.app, data.namespace
        # The first object a release creates: refuse a missing namespace before anything.
        self.kube.require_namespace(namespace, data.cluster)
        current = self.kube.call_or_none(
            f"read service {name}", namespace,
            lambda: self.kube.core.read_namespaced_service(
                name, namespace, _request_timeout=REQUEST_TIMEOUT), data.cluster)
        if current is None:
            self.kube.call(f"create service {name}", namespace,
                           lambda: self.kube.core.create_namespaced_service(
                               namespace, client.V1Service.model_validate(body),
                               _request_timeout=REQUEST_TIMEOUT, _preload_content=False),
                           data.cluster)
            return
        spec = current.spec or client.V1ServiceSpec()
        ports = sorted((p.port, p.target_port) for p in spec.ports or [])
        if spec.selector == body["spec"]["selector"] and ports == sorted(
                (p, p) for p in data.ports):
            return
        patch = {"spec": {"selector": body["spec"]["selector"], "ports": body["spec"]["ports"]}}
        self.kube.call(f"update service {name}", namespace,
                       lambda: self.kube.core.patch_namespaced_service(
                           name, namespace, patch, _request_timeout=REQUEST_TIMEOUT,
                           _preload_content=False), data.cluster)

    def add(self, data: TrafficInput) -> None:
        """Put as many pods of each version in the Service as there are instances of it
        (idempotent): label ``traffic=on``, deletion cost cleared."""
        wanted = Counter(instance.version for instance in data.instances)
        for version, count in sorted(wanted.items()):
            pods = keep_order(self.kube.pods(data.namespace,
                                             version_selector(data.env_key, version),
                                             data.cluster))
            for pod in pods[:count]:
                if _labels(pod).get(LABEL_TRAFFIC) != "on" or _draining(pod):
                    self._patch(data.namespace, pod, TRAFFIC_ON, data.cluster)

    def _leaving(self, data: DrainInput) -> list[client.V1Pod]:
        pods = keep_order(self.kube.pods(data.namespace,
                                         version_selector(data.env_key, data.version),
                                         data.cluster))
        return pods[data.keep:]

    def _patch(self, namespace: str, pod: client.V1Pod, body: dict[str, Any],
               cluster: str) -> None:
        name = pod.metadata.name if pod.metadata else None
        if name:
            self.kube.patch_pod(namespace, name, body, cluster)

    def drain(self, data: DrainInput, progress: Progress | None = None) -> None:
        """Take the pods beyond the first ``keep`` out of the Service, mark them to be removed
        first, and give in-flight requests the drain period to finish. The pods themselves
        go when the version is scaled down or removed."""
        leaving = self._leaving(data)
        for pod in leaving:
            self._patch(data.namespace, pod, TRAFFIC_OFF, data.cluster)
        if not leaving:
            return
        if progress:
            progress(f"{len(leaving)} pods of v{data.version} out of the Service, draining "
                     f"for {data.timeout_seconds:.0f}s")
        # Kubernetes does not tell when a pod's last connection closed: wait the drain period.
        deadline = time.monotonic() + data.timeout_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(self.poll_seconds, remaining))
            if progress:
                progress(f"draining v{data.version}: {max(0.0, remaining):.0f}s left")

    def remove(self, data: DrainInput) -> None:
        """Take the version's pods beyond ``keep`` out of the Service at once (undo path)."""
        for pod in self._leaving(data):
            self._patch(data.namespace, pod, TRAFFIC_OFF, data.cluster)

    def remove_frontend(self, data: EnsureFrontendInput) -> None:
        """Delete the app's Service when it belongs to this environment (its ``slipway.env``
        label); a Service of another environment of the app, or none, is left alone."""
        name, namespace = data.app, data.namespace
        if not self.kube.namespace_exists(namespace, data.cluster):
            return  # the namespace went, and the Service with it
        current = self.kube.call_or_none(
            f"read service {name}", namespace,
            lambda: self.kube.core.read_namespaced_service(
                name, namespace, _request_timeout=REQUEST_TIMEOUT), data.cluster)
        labels = (current.metadata.labels if current is not None and current.metadata
                  else None) or {}
        if current is None or labels.get(LABEL_ENV) != data.env_key:
            return
        self.kube.call_or_none(f"delete service {name}", namespace,
                               lambda: self.kube.core.delete_namespaced_service(
                                   name, namespace, _request_timeout=REQUEST_TIMEOUT,
                                   _preload_content=False), data.cluster)
