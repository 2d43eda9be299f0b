"""Lane apps on a Docker engine: containers labelled ``slipway.lane`` behind their own
HAProxy frontend (the embedded default; see lanes/target.py for the contract)."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from integrations.docker.runtime import DockerRuntime
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyError, HaproxyRouter
from integrations.protocols import Progress
from lanes.target import LABEL_LANE, LaneDeployment, lane_env_key
from schemas.models import Instance, StartVersionInput, VersionRef

# Lane frontends take ports from this far above SLIPWAY_LB_PORT_START, so they never race the
# environments' own frontends (allocated from the start of the range by the catalogue).
LANE_PORT_OFFSET = 1000


def bindable(host: str, port: int) -> bool:
    """True when a TCP socket can bind ``host:port`` now (SO_REUSEADDR, as HAProxy binds)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class DockerLaneTarget:
    """Lane apps as containers labelled ``slipway.lane`` behind their own HAProxy frontend
    (the lane's entry, which sets the lane's key), and routed from the app's QA load balancer
    for requests that carry the key (integrations/haproxy/lane_router.py)."""

    def __init__(self, runtime: DockerRuntime, router: HaproxyRouter,
                 bind_address: str = "127.0.0.1", deadline_seconds: float = 300.0,
                 drain_seconds: float = 10.0, port_start: int = 18080 + LANE_PORT_OFFSET) -> None:
        self.runtime = runtime
        self.port_start = port_start
        self.router = router
        self.lanes = LaneRouter(router)
        self.bind_address = bind_address
        self.deadline_seconds = deadline_seconds
        # How long a retired version may take to finish the requests it is serving.
        self.drain_seconds = drain_seconds

    def create_namespace(self, lane: str) -> dict[str, Any]:
        # Docker engines have no namespaces: lane containers are scoped by their labels.
        return {"runtime": "docker", "created": False, "scope": f"label {LABEL_LANE}={lane}"}

    def delete_namespace(self, detail: dict[str, Any]) -> None:
        return None  # nothing was created

    def deploy(self, want: LaneDeployment, progress: Progress | None = None) -> dict[str, Any]:
        env_key = lane_env_key(want.app, want.lane)
        ref = VersionRef(app=want.app, env_key=env_key, cluster="", version=want.version)
        self.runtime.start_version(
            StartVersionInput(version=ref, image=want.image, replicas=1, ports=want.ports or
                              [want.port], env_vars=want.env_vars, cpu=want.cpu,
                              memory=want.memory, health_path=want.health_path,
                              labels={LABEL_LANE: want.lane}),
            progress)
        instances = self.runtime.wait_ready(ref, 1, want.port, want.health_path,
                                            self.deadline_seconds, progress)
        lb_port = self._lb_port(env_key)
        self.lanes.set_entry(env_key, want.lane)  # before the frontend starts: in its config
        self.router.ensure_frontend(env_key, lb_port, want.health_path)
        for instance in instances:
            self.router.add_server(env_key, instance.name, instance.address, instance.port)
        detail = {"runtime": "docker", "env_key": env_key, "image": want.image,
                  "version": want.version, "lb_port": lb_port,
                  "url": f"http://{self.bind_address}:{lb_port}/"}
        return {**detail, "route": self._route(want, env_key, instances[0])}

    def _route(self, want: LaneDeployment, env_key: str, instance: Instance) -> dict[str, Any]:
        """Route the lane's keyed requests from the app's QA load balancer to ``address:port``
        (a newer version moves the lane's route there); what the ledger needs to undo it."""
        if not want.route_key:
            return {"skipped": "the app has no QA environment to route from"}
        if self.router.frontend_port(want.route_key) is None:
            return {"skipped": f"the load balancer of {want.route_key} is not on this host"}
        route = self.lanes.route(want.route_key, want.lane, instance.address, instance.port,
                                 want.fail_closed, source=env_key, server=instance.name)
        return {"env_key": want.route_key, "lane": want.lane, "slot": route.slot,
                "fail_closed": want.fail_closed}

    def retire(self, detail: dict[str, Any], app: str) -> None:
        ref = self._ref(detail, app)
        # Servers are named v<version>-<index>; a lane runs one replica per version.
        with contextlib.suppress(HaproxyError):  # frontend already gone: nothing routes to it
            self.router.drain(ref.env_key, f"v{ref.version}-0")
            self.router.wait_idle(ref.env_key, f"v{ref.version}-0", timeout=self.drain_seconds)
        self.router.remove_server(ref.env_key, f"v{ref.version}-0")
        self.runtime.remove_version(ref)

    def remove(self, detail: dict[str, Any], app: str) -> None:
        # The route first: the lane's keyed requests go to the baseline before it stops.
        route = detail.get("route") or {}
        if route.get("env_key"):
            self.lanes.unroute(route["env_key"], route["lane"])
        self.router.stop(detail["env_key"])
        ref = self._ref(detail, app)
        # Every version, not only the ledger's: a redeploy that failed between starting the
        # new version and retiring the old one leaves containers the ledger does not name.
        for version in sorted(set(self.runtime.versions(ref.env_key)) | {ref.version}):
            self.runtime.remove_version(ref.model_copy(update={"version": version}))

    def _lb_port(self, env_key: str) -> int:
        """The frontend's port: the one it already has (a retry, a newer version), else the
        lowest port from ``port_start`` that no frontend holds and nothing has bound."""
        current = self.router.frontend_port(env_key)
        if current is not None:
            return current
        held = {self.router.frontend_port(key) for key in self.router.known_keys()}
        for port in range(self.port_start, 65536):
            if port not in held and bindable(self.bind_address, port):
                return port
        raise RuntimeError(f"no free lane frontend port from {self.port_start} up to 65535")

    @staticmethod
    def _ref(detail: dict[str, Any], app: str) -> VersionRef:
        # Ledgers written before versions were recorded ran version 1.
        return VersionRef(app=app, env_key=detail["env_key"], cluster="",
                          version=int(detail.get("version", 1)))
