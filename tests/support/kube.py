"""A Kubernetes API for fault injection: kmock's emulator with the gaps filled, plus a tiny
"kubelet".

The Kubernetes tests run against a real control plane (tests/support/kube_server.py). This
emulator stays for what that cluster cannot give: containers that crash-loop (its hollow node
runs none), a server of an unsupported version, and API answers a healthy server does not
send (500, 429). Tests talk HTTP to ``kmock`` 0.8's ``KubernetesEmulator`` with the official
client, exactly as production does. :class:`KubeEmulator` adds what the runtime relies on:

- ``GET /version`` answers :attr:`KubeEmulator.git_version`;
- lists honour ``labelSelector`` (kmock ignores it);
- namespaces exist only when created: a create in a missing namespace answers 404 like the
  API server, ``GET /api/v1/namespaces/<ns>`` answers from :attr:`KubeEmulator.namespaces`;
- ``metadata.generation`` starts at 1 and grows with every spec change;
- :attr:`KubeEmulator.faults`: status codes the next requests are answered with.

:class:`Kubelet` plays the Deployment controller and the kubelets: it creates and deletes pod
objects to match ``spec.replicas``, marks them ready after a short delay and writes the
Deployment's status. It runs as a task on the test's event loop, concurrently with the
worker's activities, and can make a version's pods crash on cue.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
import pytest_asyncio

DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
PODS = kmock.resource("", "v1", "pods")
SERVICES = kmock.resource("", "v1", "services")
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)$")
COST = "controller.kubernetes.io/pod-deletion-cost"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _status(code: int, reason: str, message: str) -> aiohttp.web.Response:
    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "metadata": {},
                                      "status": "Failure", "code": code, "reason": reason,
                                      "message": message}, status=code)


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with selectors, namespaces, generations, 403s and quantity checks."""

    def __init__(self, namespaces: set[str] | None = None) -> None:
        super().__init__()
        self.namespaces: set[str] = set(namespaces or ())
        # Status codes to answer the next requests with, one each (e.g. 500, 429).
        self.faults: list[int] = []
        # What GET /version reports; the runtime refuses servers older than 1.22.
        self.git_version = "v1.30.0"
        # What happened, in order: ("scale", deployment, replicas), ("delete", deployment),
        # ("traffic", pod, on|off), ("evict", pod, its traffic label) when the kubelet removes
        # a pod on scale-down — the test's record of every step of a rollout.
        self.log: list[tuple[str, str, Any]] = []
        for resource in (DEPLOYMENTS, PODS, SERVICES):
            self.resources[resource] = kmock.ResourceInfo()

    def create_namespace(self, name: str) -> None:
        self.namespaces.add(name)

    # -- reading state from tests -----------------------------------------------------------

    def live(self, resource: kmock.resource, namespace: str | None = None
             ) -> dict[str, dict[str, Any]]:
        """Objects of a resource that exist now, by name."""
        return {name: obj.raw for (res, ns, name), obj in list(self.objects.items())
                if res == resource and not obj.deleted
                and (namespace is None or ns == namespace)}

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.live(DEPLOYMENTS, namespace).get(name)

    def pods_of(self, namespace: str, deployment: str) -> list[dict[str, Any]]:
        return [p for p in self.live(PODS, namespace).values()
                if p["metadata"].get("annotations", {}).get("kubelet/owner") == deployment]

    # -- the API ----------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        path = request.url.path
        if path.rstrip("/") == "/version":
            major, minor = self.git_version.lstrip("v").split(".")[:2]
            return aiohttp.web.json_response({
                "major": major, "minor": minor, "gitVersion": self.git_version,
                "gitCommit": "0" * 40, "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                "compiler": "gc", "platform": "linux/amd64"})
        match = _NAMESPACE_PATH.match(path)
        if match and request.method == kmock.method.GET:
            return self._namespace(match.group(1))
        if self.faults:
            code = self.faults.pop(0)
            return _status(code, {429: "TooManyRequests"}.get(code, "InternalError"),
                           f"injected fault {code}")
        namespace = request.namespace
        if request.resource is None or namespace is None:
            return await super()._handle(request)
        if request.action == kmock.action.CREATE:
            if namespace not in self.namespaces:
                return _status(404, "NotFound", f'namespaces "{namespace}" not found')
            return await self._create(request, namespace)
        if request.action == kmock.action.LIST and namespace not in self.namespaces:
            return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": []})
        if request.action == kmock.action.LIST and request.params.get("labelSelector"):
            return self._list(request, namespace)
        if request.action == kmock.action.UPDATE and request.name:
            return await self._update(request, namespace, request.name)
        if request.action == kmock.action.DELETE and request.name and \
                request.resource == DEPLOYMENTS:
            self.log.append(("delete", request.name, None))
        return await super()._handle(request)

    def _namespace(self, name: str) -> aiohttp.web.Response:
        if name not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{name}" not found')
        return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Namespace",
                                          "metadata": {"name": name},
                                          "status": {"phase": "Active"}})

    def _list(self, request: kmock.Request, namespace: str) -> aiohttp.web.Response:
        assert request.resource is not None
        selector = request.params["labelSelector"]
        items = [obj for obj in self.live(request.resource, namespace).values()
                 if selector_matches(selector, obj.get("metadata", {}).get("labels") or {})]
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": items})

    async def _create(self, request: kmock.Request, namespace: str) -> aiohttp.web.StreamResponse:
        data = request.data
        meta = data.setdefault("metadata", {})
        meta.update(namespace=namespace, generation=1, uid=str(uuid.uuid4()),
                    creationTimestamp=_now(), resourceVersion="1")
        response = await super()._handle(request)
        if request.resource == DEPLOYMENTS and response.status < 300:
            self.log.append(("scale", meta["name"], data.get("spec", {}).get("replicas", 1)))
        return response

    async def _update(self, request: kmock.Request, namespace: str,
                      name: str) -> aiohttp.web.StreamResponse:
        assert request.resource is not None
        before = self.live(request.resource, namespace).get(name)
        response = await super()._handle(request)
        after = self.live(request.resource, namespace).get(name)
        if before is None or after is None or response.status >= 300:
            return response
        if request.resource == DEPLOYMENTS and before.get("spec") != after.get("spec"):
            generation = int(before["metadata"].get("generation", 1)) + 1
            self.objects[request.resource, namespace, name].patch(
                {"metadata": {"generation": generation}})
            if before["spec"].get("replicas") != after["spec"].get("replicas"):
                self.log.append(("scale", name, after["spec"].get("replicas")))
        if request.resource == PODS:
            old = before["metadata"].get("labels", {}).get("traffic")
            new = after["metadata"].get("labels", {}).get("traffic")
            if old != new:
                self.log.append(("traffic", name, new))
        return response


@dataclass
class Kubelet:
    """Reconciles Deployments into pod objects and status, like the controllers would."""

    emulator: KubeEmulator
    ready_after: float = 0.2
    interval: float = 0.05
    # Deployment name → condition; while it holds, that Deployment's pods crash-loop.
    failing: dict[str, Callable[[], bool]] = field(default_factory=dict)
    _born: dict[str, float] = field(default_factory=dict)

    def fail_health(self, deployment: str, when: Callable[[], bool] = lambda: True) -> None:
        self.failing[deployment] = when

    async def run(self) -> None:
        while True:
            self.sync()
            await asyncio.sleep(self.interval)

    def sync(self) -> None:
        now = asyncio.get_running_loop().time()
        deployments = [(ns, name, obj.raw) for (res, ns, name), obj
                       in list(self.emulator.objects.items())
                       if res == DEPLOYMENTS and not obj.deleted]
        for namespace, name, deployment in deployments:
            self._reconcile(namespace or "", name, deployment, now)
        owners = {(ns, name) for ns, name, _ in deployments}
        for (res, ns, _name), obj in list(self.emulator.objects.items()):
            owner = (obj.raw["metadata"].get("annotations", {}).get("kubelet/owner")
                     if res == PODS and not obj.deleted else None)
            if owner and (ns, owner) not in owners:
                obj.delete()  # garbage collection of a deleted Deployment's pods

    def _reconcile(self, namespace: str, name: str, deployment: dict[str, Any],
                   now: float) -> None:
        spec = deployment.get("spec", {})
        desired = int(spec.get("replicas", 1))
        pods = self.emulator.pods_of(namespace, name)
        if len(pods) > desired:
            # The ReplicaSet controller: lowest pod-deletion-cost first, then the newest.
            doomed = sorted(pods, key=lambda p: (
                int(p["metadata"].get("annotations", {}).get(COST, "0")),
                -self._born.get(p["metadata"]["name"], 0.0)))[:len(pods) - desired]
            for pod in doomed:
                self.emulator.objects[PODS, namespace, pod["metadata"]["name"]].delete()
                self.emulator.log.append(("evict", pod["metadata"]["name"],
                                          pod["metadata"]["labels"].get("traffic")))
            pods = [p for p in pods if p not in doomed]
        template = spec.get("template", {})
        for _ in range(desired - len(pods)):
            pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
            meta = template.get("metadata", {})
            self.emulator.objects[PODS, namespace, pod_name] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace,
                             "labels": dict(meta.get("labels", {})),
                             "annotations": {**meta.get("annotations", {}),
                                             "kubelet/owner": name},
                             "creationTimestamp": _now(), "uid": str(uuid.uuid4())},
                "spec": copy.deepcopy(template.get("spec", {})),
                "status": self._pod_status(template, ready=False, crashing=False),
            }
            self._born[pod_name] = now
        crashing = name in self.failing and self.failing[name]()
        ready = 0
        for pod in self.emulator.pods_of(namespace, name):
            pod_name = pod["metadata"]["name"]
            is_ready = not crashing and now - self._born.get(pod_name, now) >= self.ready_after
            ready += is_ready
            status = self._pod_status(template, is_ready, crashing)
            if pod.get("status") != status:
                self.emulator.objects[PODS, namespace, pod_name].patch({"status": status})
        count = len(self.emulator.pods_of(namespace, name))
        status = {"observedGeneration": deployment["metadata"].get("generation", 1),
                  "replicas": count, "updatedReplicas": count, "readyReplicas": ready,
                  "availableReplicas": ready}
        if deployment.get("status") != status:
            self.emulator.objects[DEPLOYMENTS, namespace, name].patch({"status": status})

    @staticmethod
    def _pod_status(template: dict[str, Any], ready: bool, crashing: bool) -> dict[str, Any]:
        containers = template.get("spec", {}).get("containers", [])
        state: dict[str, Any] = (
            {"waiting": {"reason": "CrashLoopBackOff",
                         "message": "back-off 10s restarting failed container"}}
            if crashing else {"running": {"startedAt": "2026-01-01T00:00:00Z"}})
        return {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": c.get("name", "app"), "image": c.get("image", ""),
                                   "imageID": "", "ready": ready,
                                   "restartCount": 3 if crashing else 0, "state": state}
                                  for c in containers],
        }


@dataclass
class KubeCluster:
    """A running emulator, its kubelet and a kubeconfig file pointing at it."""

    emulator: KubeEmulator
    kubelet: Kubelet
    url: str
    kubeconfig: Path


def write_kubeconfig(path: Path, url: str, context: str = "kmock") -> Path:
    """A kubeconfig (JSON is YAML) with one context for the emulator and a dummy token."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "slipway", "user": {"token": "test-token"}}],
        "contexts": [{"name": context, "context": {"cluster": "kmock", "user": "slipway"}}],
    }))
    return path


@contextlib.asynccontextmanager
async def kube_cluster(directory: Path, namespaces: set[str]) -> AsyncIterator[KubeCluster]:
    """Serve a :class:`KubeEmulator` over HTTP with its :class:`Kubelet` running."""
    emulator = KubeEmulator(namespaces)
    async with emulator, kmock.Server(emulator) as server:
        kubelet = Kubelet(emulator)
        task = asyncio.create_task(kubelet.run())
        url = str(server.url).rstrip("/")
        try:
            yield KubeCluster(emulator, kubelet, url,
                              write_kubeconfig(directory / "kubeconfig", url))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest_asyncio.fixture(name="kube")
async def kube_fixture(tmp_path: Path) -> AsyncIterator[KubeCluster]:
    """An emulated cluster with the namespace ``shop-prod``."""
    async with kube_cluster(tmp_path, {"shop-prod"}) as cluster:
        yield cluster
