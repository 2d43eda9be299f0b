"""``Runtime`` for Kubernetes clusters: one Deployment per version of an app.

An environment lives in its own namespace. Version N of an app is the Deployment
``<app>-v<N>``, labelled ``app``, ``version`` and ``slipway.env``; its pods carry
``traffic=on`` from the template, and the app's Service (see
:mod:`integrations.kubernetes.traffic`) selects ``app`` + ``traffic=on``. Pods have no stable
index in Kubernetes, so the instances this runtime reports (``v<N>-<i>``) are a count, and their
address is the Service: the cluster's Service, not Slipway, spreads requests over the ready pods.
"""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from integrations.errors import InvalidSpecError, VersionNotReadyError
from integrations.kubernetes.api import (
    LABEL_APP,
    LABEL_ENV,
    LABEL_MANAGED_BY,
    LABEL_TRAFFIC,
    LABEL_VERSION,
    REQUEST_TIMEOUT,
    KubeAccess,
    deployment_name,
    pod_ready,
    version_selector,
)
from integrations.protocols import Progress
from schemas.models import ImageSpec, Instance, StartVersionInput, VersionRef
from schemas.settings import Cluster

MIN_REPLICAS = 1
MAX_REPLICAS = 24
CONTAINER = "app"
# Waiting reasons a pod does not recover from without a new release: fail fast on them.
FATAL_WAITING = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError"}


def deployment_body(spec: StartVersionInput, pull_secrets: list[str]) -> dict[str, Any]:
    """The Deployment of one version, as the API takes it."""
    ref = spec.version
    selector = {LABEL_APP: ref.app, LABEL_ENV: ref.env_key, LABEL_VERSION: str(ref.version)}
    resources: dict[str, dict[str, str]] = {}
    for key, value in (("cpu", spec.cpu), ("memory", spec.memory)):
        if value:
            # Requests = limits: the scheduler reserves what the environment was given.
            resources.setdefault("requests", {})[key] = value
            resources.setdefault("limits", {})[key] = value
    port = spec.ports[0] if spec.ports else 8080
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "ports": [{"containerPort": p, "protocol": "TCP"} for p in spec.ports],
        "env": [{"name": k, "value": v} for k, v in sorted(spec.env_vars.items())]
        + [{"name": "SLIPWAY_VERSION", "value": str(ref.version)}],
        "readinessProbe": {"httpGet": {"path": spec.health_path, "port": port},
                           "periodSeconds": 5, "failureThreshold": 3},
    }
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {"containers": [container]}
    if pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(ref.app, ref.version),
                     "labels": {**selector, LABEL_MANAGED_BY: "slipway"},
                     "annotations": {"slipway.image": spec.image}},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # Pods of one version never change template, so keep little history.
            "revisionHistoryLimit": 2,
            "template": {"metadata": {"labels": {**selector, LABEL_TRAFFIC: "on"}},
                         "spec": pod_spec},
        },
    }


def waiting_problems(pods: list[client.V1Pod], reasons: set[str] | None = None) -> list[str]:
    """``pod: Reason (message)`` for containers waiting for one of ``reasons`` (any if None)."""
    problems: list[str] = []
    for pod in pods:
        name = pod.metadata.name if pod.metadata else "?"
        for status in (pod.status.container_statuses or []) if pod.status else []:
            waiting = status.state.waiting if status.state else None
            if waiting and waiting.reason and (reasons is None or waiting.reason in reasons):
                problems.append(f"pod {name}: {waiting.reason}"
                                + (f" ({waiting.message})" if waiting.message else ""))
    return problems


class KubernetesRuntime:
    """Runs versions of an app as Deployments in the environment's namespace."""

    def __init__(self, kube: KubeAccess, image_pull_secrets: list[str] | None = None,
                 poll_seconds: float = 0.5) -> None:
        self.kube = kube
        self.image_pull_secrets = list(image_pull_secrets or [])
        self.poll_seconds = poll_seconds

    @classmethod
    def from_cluster(cls, cluster: Cluster, name: str = "",
                     api_client: client.ApiClient | None = None) -> KubernetesRuntime:
        """A runtime for a ``Cluster`` from settings; the API client is built on first use."""
        return cls(KubeAccess(cluster, name, api_client), cluster.image_pull_secrets)

    def inspect_image(self, image: str) -> ImageSpec:
        """The image as given: the nodes pull it, not us. A ``@sha256:`` reference keeps its
        digest, so the baseline records exactly what ran."""
        _, _, digest = image.partition("@")
        return ImageSpec(image=image, digest=digest if digest.startswith("sha256:") else "")

    def _read(self, ref: VersionRef) -> client.V1Deployment | None:
        name = deployment_name(ref.app, ref.version)
        return self.kube.call_or_none(
            f"read deployment {name}", ref.namespace,
            lambda: self.kube.apps.read_namespaced_deployment(
                name, ref.namespace, _request_timeout=REQUEST_TIMEOUT), ref.cluster)

    def start_version(self, spec: StartVersionInput, progress: Progress | None = None) -> None:
        """Ensure the version's Deployment exists with exactly ``spec.replicas`` replicas.

        Idempotent: creates the Deployment, or patches replicas and template. Scaling down
        removes the drained pods first (their deletion cost is lower).
        """
        ref = spec.version
        if not MIN_REPLICAS <= spec.replicas <= MAX_REPLICAS:
            raise InvalidSpecError(f"replicas must be {MIN_REPLICAS}–{MAX_REPLICAS}, got "
                                   f"{spec.replicas} for v{ref.version} of {ref.app}")
        body = deployment_body(spec, self.image_pull_secrets)
        name = body["metadata"]["name"]
        if self._read(ref) is None:
            # Checked before the first object of the environment is created, not after a 404:
            # the error names the namespace even where the API's 404 would be ambiguous.
            self.kube.require_namespace(ref.namespace, ref.cluster)
            self.kube.call(f"create deployment {name}", ref.namespace,
                           lambda: self.kube.apps.create_namespaced_deployment(
                               ref.namespace, client.V1Deployment.model_validate(body),
                               _request_timeout=REQUEST_TIMEOUT, _preload_content=False),
                           ref.cluster)
            if progress:
                progress(f"created deployment {name} with {spec.replicas} replicas")
            return
        patch = {"metadata": {"labels": body["metadata"]["labels"],
                              "annotations": body["metadata"]["annotations"]},
                 "spec": {"replicas": spec.replicas, "template": body["spec"]["template"]}}
        self.kube.call(f"update deployment {name}", ref.namespace,
                       lambda: self.kube.apps.patch_namespaced_deployment(
                           name, ref.namespace, patch, _request_timeout=REQUEST_TIMEOUT,
                           _preload_content=False), ref.cluster)
        if progress:
            progress(f"deployment {name} set to {spec.replicas} replicas")

    def versions(self, env_key: str, namespace: str = "default") -> list[int]:
        """Every version with a Deployment in the environment (scaled to zero or not)."""
        found = self.kube.call(
            f"list deployments of {env_key}", namespace,
            lambda: self.kube.apps.list_namespaced_deployment(
                namespace, label_selector=version_selector(env_key),
                _request_timeout=REQUEST_TIMEOUT))
        labels = [d.metadata.labels or {} for d in found.items if d.metadata]
        return sorted({int(v) for v in (lab.get(LABEL_VERSION) for lab in labels)
                       if v and v.isdigit()})

    def _pods(self, ref: VersionRef) -> list[client.V1Pod]:
        return self.kube.pods(ref.namespace, version_selector(ref.env_key, ref.version),
                              ref.cluster)

    def wait_ready(self, ref: VersionRef, replicas: int, port: int, health_path: str,
                   deadline_seconds: float, progress: Progress | None = None) -> list[Instance]:
        """Wait until the Deployment's controller has caught up with its spec and exactly
        ``replicas`` pods are updated and ready; fail fast on pods that cannot start."""
        deadline = time.monotonic() + deadline_seconds
        name = deployment_name(ref.app, ref.version)
        while True:
            deployment = self._read(ref)
            if deployment is None:
                raise VersionNotReadyError(f"deployment {name} does not exist in namespace "
                                           f"{ref.namespace!r} of cluster {ref.cluster!r}")
            status = deployment.status or client.V1DeploymentStatus()
            generation = (deployment.metadata.generation if deployment.metadata else 0) or 0
            counts = (status.replicas or 0, status.updated_replicas or 0,
                      status.ready_replicas or 0)
            caught_up = (status.observed_generation or 0) >= generation
            last = (f"{counts[2]}/{replicas} replicas of v{ref.version} ready "
                    f"({counts[1]} updated, {counts[0]} existing)")
            if progress:
                progress(last)
            # status.replicas == replicas too: surplus pods of a scale-down are gone, so the
            # traffic router never turns a leaving pod back on.
            if caught_up and counts == (replicas, replicas, replicas):
                break
            for condition in status.conditions or []:
                if condition.type == "Progressing" and condition.reason == \
                        "ProgressDeadlineExceeded":
                    raise VersionNotReadyError(f"deployment {name}: {condition.message or ''}")
                # The ReplicaSet cannot create pods (a quota, an admission webhook, a pod
                # security rule): no pod will come however long we wait.
                if condition.type == "ReplicaFailure" and condition.status == "True":
                    raise VersionNotReadyError(
                        f"deployment {name} cannot create its pods ({condition.reason}): "
                        f"{condition.message or ''}")
            stuck = waiting_problems(self._pods(ref), FATAL_WAITING)
            if stuck:
                raise VersionNotReadyError(f"v{ref.version} cannot become ready: "
                                           + "; ".join(stuck))
            if time.monotonic() > deadline:
                raise VersionNotReadyError(
                    f"progress deadline ({deadline_seconds:.0f}s) passed: {last}")
            time.sleep(self.poll_seconds)
        return [Instance(name=f"v{ref.version}-{i}", version=ref.version, address=ref.app,
                         port=port) for i in range(replicas)]

    def check_health(self, ref: VersionRef, replicas: int, port: int,
                     health_path: str) -> list[str]:
        """Problems of a running version right now: missing or not-ready replicas, restarts,
        containers stuck in CrashLoopBackOff and the like. Empty means healthy."""
        deployment = self._read(ref)
        if deployment is None:
            return [f"deployment {deployment_name(ref.app, ref.version)} does not exist"]
        ready = (deployment.status.ready_replicas if deployment.status else 0) or 0
        problems: list[str] = []
        pods = self._pods(ref)
        for pod in pods:
            name = pod.metadata.name if pod.metadata else "?"
            if not pod_ready(pod):
                problems.append(f"pod {name} not ready")
            for status in (pod.status.container_statuses or []) if pod.status else []:
                if status.restart_count:
                    problems.append(f"pod {name} restarted {status.restart_count}×")
        problems += waiting_problems(pods)
        if ready < replicas and not problems:
            problems.append(f"{ready}/{replicas} replicas of v{ref.version} ready")
        return problems

    def stop_version(self, ref: VersionRef) -> None:
        """Scale to zero, keeping the Deployment so it can be scaled up again."""
        name = deployment_name(ref.app, ref.version)
        self.kube.call_or_none(f"scale deployment {name} to 0", ref.namespace,
                               lambda: self.kube.apps.patch_namespaced_deployment_scale(
                                   name, ref.namespace, {"spec": {"replicas": 0}},
                                   _request_timeout=REQUEST_TIMEOUT, _preload_content=False),
                               ref.cluster)

    def remove_version(self, ref: VersionRef) -> None:
        """Delete the version's Deployment (its pods go with it); already gone is fine."""
        name = deployment_name(ref.app, ref.version)
        self.kube.call_or_none(f"delete deployment {name}", ref.namespace,
                               lambda: self.kube.apps.delete_namespaced_deployment(
                                   name, ref.namespace, propagation_policy="Background",
                                   _request_timeout=REQUEST_TIMEOUT, _preload_content=False),
                               ref.cluster)
