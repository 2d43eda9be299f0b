"""The Kubernetes API emulator of tests/support/kube.py plus namespace objects, for lanes:
a lane's namespace is created, read with its labels, listed by label and deleted."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock

from tests.support.kube import KubeEmulator, Kubelet, _now, _status, write_kubeconfig

NAMESPACES = "/api/v1/namespaces"


class LaneEmulator(KubeEmulator):
    """The shared emulator plus namespace objects: create, read (with labels) and delete.

    kmock cannot parse ``POST /api/v1/namespaces`` and the shared emulator only knows
    namespace names, so namespace requests are answered here before kmock sees them. A
    deleted namespace is ``Terminating`` for ``finalize_after`` seconds (forever if None),
    then gone together with every object in it, as the namespace controller does.
    """

    def __init__(self, namespaces: set[str] | None = None) -> None:
        super().__init__(namespaces)
        self.namespace_objects: dict[str, dict[str, Any]] = {
            name: self._namespace_object(name, {}) for name in self.namespaces}
        self.finalize_after: float | None = 0.2
        self._gone_at: dict[str, float] = {}

    @staticmethod
    def _namespace_object(name: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(labels), "uid": name,
                             "creationTimestamp": _now(), "resourceVersion": "1"},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}

    def add_namespace(self, name: str, labels: dict[str, str]) -> None:
        """A namespace someone (or an earlier Slipway attempt) created beforehand."""
        self.namespaces.add(name)
        self.namespace_objects[name] = self._namespace_object(name, labels)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path, method = raw_request.path.rstrip("/"), raw_request.method
        if path == NAMESPACES and method == "POST":
            return self._create_namespace(await raw_request.json())
        if path == NAMESPACES and method == "GET":
            # Only the existence selector the janitor sends ("slipway.lane") is understood.
            self._finalize_due()
            wanted = raw_request.query.get("labelSelector", "")
            items = [obj for obj in self.namespace_objects.values()
                     if not wanted or wanted in obj["metadata"]["labels"]]
            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "NamespaceList",
                                              "metadata": {}, "items": items})
        name = path[len(NAMESPACES) + 1:] if path.startswith(NAMESPACES + "/") else ""
        if name and "/" not in name and method in ("GET", "DELETE"):
            if name in self.forbidden:
                return _status(403, "Forbidden", f'namespaces "{name}" is forbidden')
            self._finalize_due()
            if name not in self.namespace_objects:
                return _status(404, "NotFound", f'namespaces "{name}" not found')
            if method == "DELETE":
                self._delete_namespace(name)
            return aiohttp.web.json_response(self.namespace_objects[name])
        return await super().__call__(raw_request)

    def _create_namespace(self, body: dict[str, Any]) -> aiohttp.web.Response:
        meta = body.get("metadata") or {}
        name = str(meta.get("name", ""))
        self._finalize_due()
        if name in self.namespace_objects:
            return _status(409, "AlreadyExists", f'namespaces "{name}" already exists')
        self.add_namespace(name, meta.get("labels") or {})
        self.log.append(("namespace", name, "create"))
        return aiohttp.web.json_response(self.namespace_objects[name], status=201)

    def _delete_namespace(self, name: str) -> None:
        obj = self.namespace_objects[name]
        if obj["metadata"].get("deletionTimestamp"):
            return
        obj["metadata"]["deletionTimestamp"] = _now()
        obj["status"]["phase"] = "Terminating"
        self.log.append(("namespace", name, "delete"))
        if self.finalize_after is not None:
            self._gone_at[name] = time.monotonic() + self.finalize_after

    def _finalize_due(self) -> None:
        now = time.monotonic()
        for name, when in list(self._gone_at.items()):
            if now < when:
                continue
            del self._gone_at[name]
            self.namespace_objects.pop(name, None)
            self.namespaces.discard(name)
            for (_res, ns, _name), obj in list(self.objects.items()):
                if ns == name and not obj.deleted:
                    obj.delete()
            self.log.append(("namespace", name, "gone"))


@dataclass
class LaneCluster:
    emulator: LaneEmulator
    kubelet: Kubelet
    kubeconfig: Path


@contextlib.asynccontextmanager
async def lane_cluster(directory: Path, namespaces: set[str]) -> AsyncIterator[LaneCluster]:
    """Serve a :class:`LaneEmulator` over HTTP with its kubelet running."""
    emulator = LaneEmulator(namespaces)
    async with emulator, kmock.Server(emulator) as server:
        kubelet = Kubelet(emulator)
        task = asyncio.create_task(kubelet.run())
        url = str(server.url).rstrip("/")
        try:
            yield LaneCluster(emulator, kubelet, write_kubeconfig(directory / "kubeconfig", url))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
