"""Shared pieces of the benchmarks: a throw-away stack, sample apps, timing and figures.

Every benchmark runs against its own state directory (SQLite file, Temporal dev server on a
free port, HAProxy configs) and the local Docker engine, names its applications ``bench-…``
and removes their containers at the end. Request loops target loopback addresses only and are
bounded in count and time (tests/support/load.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402
from temporalio.service import RPCError  # noqa: E402

from catalogue.store import Store  # noqa: E402
from catalogue.tokens import ROLES  # noqa: E402
from schemas.models import ReleaseOutcome, ReleaseRequest  # noqa: E402
from schemas.settings import Settings, get_settings  # noqa: E402
from starter.cli.console import open_store  # noqa: E402
from starter.service.catalogue import add_env, mark_ready, register_app  # noqa: E402
from starter.service.releases import follow, start_release, validate_release  # noqa: E402
from starter.service.temporal_client import connect  # noqa: E402
from starter.service.tokens import create_token  # noqa: E402
from starter.stack import processes as stack  # noqa: E402
from starter.stack.server import server_url, start_server  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "examples" / "sample-app"
PREFIX = "bench-"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def spread(values: list[float], unit: str = "s", scale: float = 1.0) -> str:
    """``p50 / p99 / max`` of ``values`` as text."""
    if not values:
        return "-"
    return (f"p50 {percentile(values, 0.5) * scale:.3g}{unit} / "
            f"p99 {percentile(values, 0.99) * scale:.3g}{unit} / "
            f"max {max(values) * scale:.3g}{unit} (n={len(values)})")


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def section(title: str) -> None:
    print(f"\n== {title}", flush=True)


def figure(name: str, value: str) -> None:
    print(f"  {name:<52} {value}", flush=True)


@dataclass
class BenchStack:
    settings: Settings
    store: Store
    # The stack's server and an admin token for the `slipway` client (with a worker only).
    url: str = ""
    token: str = ""

    def client_environment(self) -> dict[str, str]:
        """The environment of a person's ``slipway`` on this stack: its server and token."""
        return {**os.environ, "SLIPWAY_URL": self.url, "SLIPWAY_TOKEN": self.token}

    async def client(self) -> Client:
        """A client on the running event loop (each ``asyncio.run`` has its own)."""
        return await connect(self.settings)

    def sample_app(self, name: str, *, replicas: int = 2, strategy: str = "gray",
                   stable_seconds: int = 2, steps: list[str] | None = None,
                   approval: str = "none", approvers: list[str] | None = None,
                   env_type: str = "bench", cluster: str = "local") -> int:
        """Register ``name`` (the sample app) with one environment; its load-balancer port."""
        register_app(self.store, name, category="in-house", tier="core",
                     owners=["bench"], approvers=approvers or [], source=str(SAMPLE),
                     description="", actor="bench")
        mark_ready(self.store, name, "bench")
        env = add_env(self.store, name, env_type, cluster=cluster, replicas=replicas, cpu="",
                      memory="", ports=[8080], env_vars={}, runtime="docker",
                      namespace="default", health_path="/healthz", settings=self.settings,
                      actor="bench", strategy=strategy, stable_seconds=stable_seconds,
                      gray_steps=steps, approval=approval)
        return env.lb_port

    async def start(self, app: str, env: str = "bench", **fields: Any) -> WorkflowHandle[Any, Any]:
        return await self.start_request(ReleaseRequest(
            app=app, env=env, requested_by=fields.pop("requested_by", "bench"), **fields))

    async def start_request(self, request: ReleaseRequest) -> WorkflowHandle[Any, Any]:
        request, summary = validate_release(self.store, request)
        return (await start_release(await self.client(), self.settings, request,
                                    summary)).handle

    async def release(self, app: str, env: str = "bench", **fields: Any) -> ReleaseOutcome:
        return await follow(await self.start(app, env, **fields), lambda _status: None)

    async def release_history(self, app: str, env: str = "bench",
                              **fields: Any) -> list[Any]:
        """Release, wait for the end (an error if it failed), and return its history."""
        handle = await self.start(app, env, **fields)
        await handle.result()
        return await history_events(handle)

    def build_drill(self, tag: str, version: str, **knobs: str) -> str:
        """The sample app built locally with drill knobs (ERROR_PERCENT, …)."""
        image = f"slipway/{PREFIX}drill:{tag}"
        docker.from_env().images.build(path=str(SAMPLE), tag=image, rm=True, buildargs={
            "BASE_IMAGE": self.settings.base_image, "VERSION": version, **knobs})
        return image


@contextmanager
def bench_stack(worker: bool = True) -> Iterator[BenchStack]:
    """A throw-away stack: its own state directory, dev server and (``worker``) worker
    process. Leaves nothing running and no bench container behind."""
    remove_bench_containers()  # a bench stopped at its time bound leaves its own behind
    state = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    os.environ.update(SLIPWAY_STATE_DIR=str(state), SLIPWAY_TASK_QUEUE="bench",
                      SLIPWAY_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
                      SLIPWAY_SERVER_PORT=str(free_port()),
                      SLIPWAY_TEMPORAL_UI_PORT=str(free_port()),
                      SLIPWAY_LB_PORT_START=str(free_port()),
                      SLIPWAY_JANITOR_MIN_AGE_SECONDS="0")
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store()
    stack.start_temporal(settings, background=True)
    url = token = ""
    if worker:
        stack.start_worker(settings, background=True)
        stack.start_agents(settings, background=True)
        start_server(settings)
        url = server_url(settings)
        token = create_token(store, "bench", name="bench-admin", roles=list(ROLES))[1]
    try:
        yield BenchStack(settings, store, url, token)
    finally:
        # A throw-away stack: its load balancers go too (`down --applications`).
        stack.stop_stack(settings)
        stack.stop_load_balancers(settings)
        remove_bench_containers()


def remove_bench_containers() -> None:
    engine = docker.from_env()
    for container in engine.containers.list(all=True, filters={"label": "slipway.app"}):
        if container.labels["slipway.app"].startswith(PREFIX):
            container.remove(force=True)


def worker_pid(settings: Settings) -> int:
    return int((stack.run_dir(settings) / "worker.pid").read_text().split()[0])


def temporal_pid(settings: Settings) -> int:
    return int((stack.run_dir(settings) / "temporal.pid").read_text().split()[0])


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def await_status(handle: WorkflowHandle[Any, Any], query: Any,
                       ready: Callable[[Any], bool], what: str, seconds: float = 120) -> Any:
    """Poll the workflow's status ``query`` until ``ready(status)``; a RuntimeError naming
    ``what`` and the last status after ``seconds`` (a bench never waits unbounded). A query
    that times out while the worker is busy counts as not ready yet."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while True:
        try:
            last = await handle.query(query)
            if ready(last):
                return last
        except RPCError:
            pass
        if time.monotonic() > deadline:
            stage = getattr(last, "stage", last)
            raise RuntimeError(f"{handle.id}: not {what} after {seconds:.0f}s (stage {stage!r}, "
                               f"{getattr(last, 'events', [])[-3:]})")
        await asyncio.sleep(0.05)


async def history_events(handle: WorkflowHandle[Any, Any]) -> list[Any]:
    return [event async for event in handle.fetch_history_events()]


def clock() -> float:
    return time.monotonic()
