"""Benchmark 4: scale. 20 concurrent releases of one-replica apps; 1,000 idle lanes held by
one worker with their TTL timers; the janitor's sweep with those lanes alive.

The idle lanes hold no application (a lane's containers would be the engine's cost, not
Slipway's): what is measured is the workflows, their timers and the worker that holds them.
Usage: ``.venv/bin/python -m bench.scale [--lanes 1000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import docker
from temporalio.client import WorkflowHandle

from bench.support import (
    PREFIX,
    SAMPLE,
    BenchStack,
    await_status,
    bench_stack,
    figure,
    rss_mb,
    section,
    spread,
    temporal_pid,
    worker_pid,
)
from catalogue.store import CatalogueError
from schemas.lanes import LaneSpec, lane_workflow_id
from starter.service.releases import follow
from workflows.janitor import JanitorWorkflow
from workflows.swimlane import SwimlaneWorkflow

CONCURRENT = 20
START_BATCH = 50


def concurrent_releases(bench: BenchStack) -> None:
    image = f"slipway/{PREFIX}scale:1"
    docker.from_env().images.build(path=str(SAMPLE), tag=image, rm=True, buildargs={
        "BASE_IMAGE": bench.settings.base_image, "VERSION": "1"})
    apps = [f"{PREFIX}scale{number}" for number in range(CONCURRENT)]
    for app in apps:
        bench.sample_app(app, replicas=1, strategy="recreate")

    async def run() -> tuple[float, list[float], list[str]]:
        began = time.monotonic()
        durations: list[float] = []
        problems: list[str] = []

        async def one(app: str) -> None:
            started = time.monotonic()
            try:
                await follow(await bench.start(app, image=image), lambda _s: None)
                durations.append(time.monotonic() - started)
            except CatalogueError as error:
                problems.append(f"{app}: {error}")

        await asyncio.gather(*(one(app) for app in apps))
        return time.monotonic() - began, durations, problems

    wall, durations, problems = asyncio.run(run())
    figure(f"{CONCURRENT} concurrent releases (1 replica each): total wall", f"{wall:.1f}s")
    figure("  each release", spread(durations))
    figure("  failed", f"{len(problems)}" + (f": {problems[:3]}" if problems else ""))
    docker.from_env().images.remove(image, force=True)


def idle_lanes(bench: BenchStack, count: int) -> None:
    worker_before, server_before = (rss_mb(worker_pid(bench.settings)),
                                    rss_mb(temporal_pid(bench.settings)))

    async def run() -> tuple[float, float]:
        client = await bench.client()
        handles: list[WorkflowHandle[Any, Any]] = []
        began = time.monotonic()
        for first in range(0, count, START_BATCH):
            handles.extend(await asyncio.gather(*(
                client.start_workflow(
                    SwimlaneWorkflow.run, LaneSpec(name=f"idle{n}", apps=[],
                                                   requested_by="bench"),
                    id=lane_workflow_id(f"idle{n}"), task_queue=bench.settings.task_queue)
                for n in range(first, min(first + START_BATCH, count)))))
        started = time.monotonic() - began
        # Idle means created and waiting on its TTL timer: every lane answers "active".
        for handle in handles[-START_BATCH:]:
            await await_status(handle, SwimlaneWorkflow.status,
                               lambda status: str(status.stage) == "active", "active", 300)
        return started, time.monotonic() - began

    started, settled = asyncio.run(run())
    figure(f"{count} idle lanes: started in", f"{started:.1f}s ({count / started:.0f} starts/s)")
    figure(f"{count} idle lanes: all active after", f"{settled:.1f}s")
    figure("worker RSS before → with the lanes (goal < 300 MB)",
           f"{worker_before:.0f} → {rss_mb(worker_pid(bench.settings)):.0f} MB")
    figure("dev-server RSS before → with the lanes",
           f"{server_before:.0f} → {rss_mb(temporal_pid(bench.settings)):.0f} MB")

    async def sweep() -> float:
        client = await bench.client()
        began = time.monotonic()
        await client.execute_workflow(JanitorWorkflow.run, id=f"{PREFIX}janitor",
                                      task_queue=bench.settings.task_queue)
        return time.monotonic() - began

    figure(f"janitor sweep with {count} live lanes", f"{asyncio.run(sweep()):.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lanes", type=int, default=1000)
    args = parser.parse_args()
    section("4. scale")
    with bench_stack() as bench:
        concurrent_releases(bench)
        idle_lanes(bench, args.lanes)


if __name__ == "__main__":
    main()
