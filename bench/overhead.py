"""Benchmarks 2 and 6: the physical floor, Slipway's overhead per step, and the cost that grows
with work.

* Floor: `docker run` of the sample app → its first 200 OK; one HAProxy runtime-API weight
  change.
* Overhead: gray releases (2 replicas, steps 1, 50 %, 100 %): each step's wall time minus its
  stable wait, and where it goes, read from the workflow history: activity work
  (started → completed: dockerd calls, health polling, HAProxy commands), queueing
  (scheduled → started) and orchestration (the rest: workflow tasks between activities).
* Cost: dockerd API calls, HAProxy commands and the admin-socket connections carrying them
  per step as replicas go 1 → 24 (counted by wrapping the clients of an in-process worker),
  and history events per release as steps, stable time and analysis grow.
Usage: ``.venv/bin/python -m bench.overhead``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import docker
import httpx
from docker.api.client import APIClient
from temporalio.api.enums.v1 import EventType

import worker as slipway_worker
from bench.support import (
    PREFIX,
    SAMPLE,
    BenchStack,
    bench_stack,
    figure,
    free_port,
    percentile,
    section,
    spread,
)
from integrations.haproxy.process import HaproxyProcesses
from integrations.haproxy.router import HaproxyRouter
from integrations.haproxy.session import AdminSocket
from schemas.analysis import AnalysisPolicy, Metric
from starter.service.analysis import set_policy

FLOOR_ROUNDS = 5
OVERHEAD_RELEASES = 4
REPLICA_COUNTS = (1, 4, 12, 24)
CALLS: Counter[str] = Counter()


def count_calls() -> None:
    """Count every dockerd request, HAProxy command and admin-socket connection made in this
    process."""
    send = APIClient.send
    haproxy_send = HaproxyProcesses._send
    haproxy_connect = HaproxyProcesses._connect

    def counted_send(self: APIClient, request: Any, **kwargs: Any) -> Any:
        CALLS["dockerd"] += 1
        return send(self, request, **kwargs)

    def counted_haproxy(self: AdminSocket, key: str, command: str) -> str:
        CALLS["haproxy"] += 1
        return haproxy_send(self, key, command)

    def counted_connect(self: AdminSocket, key: str) -> socket.socket:
        CALLS["haproxy connections"] += 1
        return haproxy_connect(self, key)

    APIClient.send = counted_send  # type: ignore[method-assign]
    HaproxyProcesses._send = counted_haproxy  # type: ignore[method-assign]
    HaproxyProcesses._connect = counted_connect  # type: ignore[method-assign]


def floor(bench: BenchStack) -> None:
    engine = docker.from_env()
    image = f"slipway/{PREFIX}floor:1"
    engine.images.build(path=str(SAMPLE), tag=image, rm=True,
                        buildargs={"BASE_IMAGE": bench.settings.base_image, "VERSION": "1"})
    first_ok = []
    for _ in range(FLOOR_ROUNDS):
        port = free_port()
        began = time.monotonic()
        container = engine.containers.run(image, detach=True,
                                          ports={"8080/tcp": ("127.0.0.1", port)},
                                          labels={"slipway.app": f"{PREFIX}floor"})
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.005)
        first_ok.append(time.monotonic() - began)
        container.remove(force=True)
    figure("floor: docker run → first 200 OK", spread(first_ok))
    router = HaproxyRouter(bench.settings.state_dir, bench.settings.haproxy_bin)
    key = f"{PREFIX}floor-local"
    router.ensure_frontend(key, free_port(), None)
    router.add_server(key, "v1-0", "127.0.0.1", free_port())
    changes = []
    for weight in range(20):
        began = time.monotonic()
        router.set_weight(key, "v1-0", 50 + weight)
        changes.append(time.monotonic() - began)
    router.stop(key)
    figure("floor: HAProxy runtime-API weight change", spread(changes, "ms", 1000))
    engine.images.remove(image, force=True)


def _at(event: Any) -> datetime:
    return event.event_time.ToDatetime()


def step_breakdown(events: list[Any]) -> list[dict[str, float]]:
    """Per step: wall time without the stable wait, and its activity work and queueing.

    A step ends where its stable wait (``watch_health``) is scheduled; the next begins when
    that wait completes. The first step begins after the build's record (rollout start)."""
    scheduled: dict[int, tuple[str, datetime]] = {}
    started: dict[int, datetime] = {}
    steps: list[dict[str, float]] = []
    current: dict[str, float] = {"work": 0.0, "queue": 0.0}
    step_began: datetime | None = None
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = (name, _at(event))
            if name == "ensure_frontend":
                step_began = _at(event)
            if name == "watch_health" and step_began is not None:
                current["wall"] = (_at(event) - step_began).total_seconds()
                steps.append(current)
                current = {"work": 0.0, "queue": 0.0}
                step_began = None
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            started[attrs.scheduled_event_id] = _at(event)
            name, at = scheduled[attrs.scheduled_event_id]
            if name != "watch_health" and step_began is not None:
                current["queue"] += (_at(event) - at).total_seconds()
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attrs = event.activity_task_completed_event_attributes
            name, _ = scheduled[attrs.scheduled_event_id]
            if name == "watch_health":
                step_began = _at(event)
            elif step_began is not None:
                current["work"] += (_at(event) - started[attrs.scheduled_event_id]
                                    ).total_seconds()
    return steps


def overhead(bench: BenchStack) -> None:
    app = f"{PREFIX}overhead"
    bench.sample_app(app, replicas=2, strategy="gray", stable_seconds=1)
    asyncio.run(bench.release(app, version_label="1"))
    steps: list[dict[str, float]] = []
    for number in range(OVERHEAD_RELEASES):
        events = asyncio.run(bench.release_history(app, version_label=f"{number + 2}"))
        steps.extend(step_breakdown(events))
    walls = [step["wall"] for step in steps]
    work = [step["work"] for step in steps]
    queue = [step["queue"] for step in steps]
    orchestration = [step["wall"] - step["work"] - step["queue"] for step in steps]
    figure("step without its stable wait (gray, 2 replicas)", spread(walls))
    figure("  activity work (dockerd, health polls, HAProxy)", spread(work))
    figure("  queueing (scheduled → started)", spread(queue, "ms", 1000))
    figure("  orchestration overhead (workflow tasks)", spread(orchestration, "ms", 1000))
    figure("orchestration overhead per step p50 (goal ≤ 100 ms)",
           f"{percentile(orchestration, 0.5) * 1000:.0f}ms")


def cost_per_replica(bench: BenchStack) -> None:
    for replicas in REPLICA_COUNTS:
        app = f"{PREFIX}cost{replicas}"
        bench.sample_app(app, replicas=replicas, strategy="gray", stable_seconds=2,
                         steps=["50%", "100%"])
        asyncio.run(bench.release(app, version_label="1"))
        CALLS.clear()
        asyncio.run(bench.release_history(app, version_label="2"))
        step_count = 2
        figure(f"{replicas:>2} replicas: dockerd calls / HAProxy commands / connections "
               "per step",
               f"{CALLS['dockerd'] / step_count:.0f} / {CALLS['haproxy'] / step_count:.0f} / "
               f"{CALLS['haproxy connections'] / step_count:.0f}")


def history_growth(bench: BenchStack) -> None:
    shapes: list[tuple[str, list[str], int, bool]] = [
        ("1 step, stable 2s", ["100%"], 2, False),
        ("3 steps, stable 2s", ["1", "50%", "100%"], 2, False),
        ("4 steps, stable 2s", ["1", "50%", "75%", "100%"], 2, False),
        ("3 steps, stable 20s", ["1", "50%", "100%"], 20, False),
        ("3 steps, stable 20s + analysis every 2s", ["1", "50%", "100%"], 20, True),
    ]
    for number, (name, steps, stable, analysed) in enumerate(shapes):
        app = f"{PREFIX}hist{number}"
        # 4 replicas: steps that come to the same replica count are merged (1 and 25 % of 2).
        bench.sample_app(app, replicas=4, strategy="gray", stable_seconds=stable, steps=steps)
        asyncio.run(bench.release(app, version_label="1"))
        if analysed:
            set_policy(bench.store, app, "bench", AnalysisPolicy(metrics=[Metric(
                name="errors", query="error_rate", max=0.5, interval_seconds=2,
                mode="dry-run")]), settings=bench.settings, actor="bench")
        events = asyncio.run(bench.release_history(app, version_label="2"))
        figure(f"history events: {name}", str(len(events)))


class InProcessWorker:
    """The worker on its own event loop in a thread, so its dockerd and HAProxy calls go
    through this process's counting wrappers."""

    def __init__(self, bench: BenchStack) -> None:
        self.bench = bench
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.stop = asyncio.Event()
        client = await self.bench.client()
        with ThreadPoolExecutor(max_workers=16) as executor, \
                ThreadPoolExecutor(max_workers=2) as builds:
            async with (slipway_worker.make_worker(client, self.bench.settings, executor),
                        slipway_worker.make_build_worker(client, self.bench.settings, builds)):
                self.ready.set()
                await self.stop.wait()

    def __enter__(self) -> InProcessWorker:
        self.thread.start()
        self.ready.wait(60)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.stop is not None
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(90)


def main() -> None:
    count_calls()
    with bench_stack(worker=False) as bench, InProcessWorker(bench):
        section("2. floor and overhead")
        floor(bench)
        overhead(bench)
        section("6. cost that grows with work")
        cost_per_replica(bench)
        history_growth(bench)


if __name__ == "__main__":
    main()
