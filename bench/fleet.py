"""Benchmark 7 (issue #28): a release's orchestration overhead per step, and approve → first
rollout activity, on 1 and on 3 Docker hosts reached through their agents.

* Overhead per step: the step's wall time without its stable wait, minus the time when at
  least one of its activities was scheduled or running (the union of their intervals: on
  several hosts a step runs one activity per host at once). What remains is the workflow's
  own time: workflow tasks between activities. Goal ≤ 50 ms p50.
* approve: the ``approve`` Update sent → the first rollout activity scheduled. Goal ≤ 100 ms
  p50.

One host: the local engine and its agent, as ``slipway up`` runs them. Three hosts:
network-namespace hosts with their own dockerd (tests/support/fleet.py, root only), an agent
process each (``slipway up`` starts an agent for every host whose engine is a local socket);
the sample image is built once and loaded into every host, and released by tag.
Usage: ``.venv/bin/python -m bench.fleet [--rounds 4]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType

from bench.people import approve_once
from bench.support import PREFIX, BenchStack, bench_stack, figure, percentile, section, spread
from starter.service.tokens import create_token
from tests.support.fleet import Fleet, FleetUnavailable

APP = f"{PREFIX}fleet"
REPLICAS = 6
STEPS = ["1", "50%", "100%"]


def _at(event: Any) -> datetime:
    return event.event_time.ToDatetime()


def _union(intervals: list[tuple[datetime, datetime]]) -> float:
    """Seconds covered by at least one interval."""
    total, end = 0.0, None
    for began, ended in sorted(intervals):
        if end is None or began > end:
            total += (ended - began).total_seconds()
            end = ended
        elif ended > end:
            total += (ended - end).total_seconds()
            end = ended
    return total


def step_overheads(events: list[Any]) -> list[tuple[float, float]]:
    """(wall, overhead) of each step of a release, from its history.

    A step runs from the end of the previous stable wait (the first: from ``ensure_frontend``
    scheduled) to the scheduling of its own stable wait (``watch_health``, one per host)."""
    scheduled: dict[int, tuple[str, datetime]] = {}
    closed: dict[int, datetime] = {}
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = (attrs.activity_type.name, _at(event))
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            closed[event.activity_task_completed_event_attributes.scheduled_event_id] = \
                _at(event)
    activities = sorted(((at, closed.get(event_id, at), name)
                         for event_id, (name, at) in scheduled.items()))
    steps: list[tuple[float, float]] = []
    began: datetime | None = None
    waits: list[datetime] = []
    for at, done, name in activities:
        if name == "ensure_frontend" and began is None and not steps:
            began = at
        elif name == "watch_health":
            if began is not None:
                inside = [(start, min(end, at)) for start, end, kind in activities
                          if began <= start < at and kind != "watch_health"]
                wall = (at - began).total_seconds()
                steps.append((wall, wall - _union(inside)))
                began = None
            waits.append(done)
        elif began is None and waits:
            began = max(waits)  # the whole window ended: every host's watch
            waits = []
    return steps


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Fleet | None]:
    """The cluster to release on: None for the local engine, else a test bed of ``count``
    namespace hosts, in SLIPWAY_CLUSTERS as ``fleet`` while the block runs."""
    if count == 1:
        yield None
        return
    bed = Fleet(count=count)
    bed.up()
    os.environ["SLIPWAY_CLUSTERS"] = json.dumps({
        "local": {}, "fleet": bed.cluster().model_dump(mode="json", exclude={"engines"})})
    try:
        yield bed
    finally:
        os.environ.pop("SLIPWAY_CLUSTERS", None)
        left = bed.down()
        if left:
            raise RuntimeError(f"fleet test bed {bed.prefix} left behind: {left}")


def load_image(bed: Fleet, image: str) -> None:
    """Copy an image of the main engine into every host of the test bed (same image ID)."""
    for host in bed.hosts:
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        subprocess.run(["docker", "-H", host.engine, "load", "-q"], stdin=save.stdout,
                       check=True, capture_output=True, timeout=120)
        save.wait(timeout=120)


def measure(bench: BenchStack, cluster: str, image: str, rounds: int
            ) -> tuple[list[float], list[float]]:
    """(overheads per step, approve latencies) of ``rounds`` releases of each kind."""
    bench.sample_app(APP, replicas=REPLICAS, strategy="gray", stable_seconds=1, steps=STEPS,
                     cluster=cluster)
    asyncio.run(bench.release(APP, image=image, version_label="0"))
    overheads: list[float] = []
    for number in range(rounds):
        events = asyncio.run(bench.release_history(APP, image=image,
                                                   version_label=f"{number + 1}"))
        overheads += [overhead for _wall, overhead in step_overheads(events)]
    approving = f"{APP}-approved"
    bench.sample_app(approving, replicas=1, strategy="gray", stable_seconds=1,
                     steps=["gate", "100%"], approval="required", approvers=["lead"],
                     cluster=cluster)
    _name, token = create_token(bench.store, "lead", roles=["approve"], actor="bench")
    approvals = [asyncio.run(approve_once(bench, token, f"{number + 1}", [], app=approving,
                                          env=f"bench@{cluster}", image=image))[0]
                 for number in range(rounds)]
    return overheads, approvals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    section("7. a release on 1 and on 3 Docker hosts with agents")
    for count in (1, 3):
        try:
            with hosts(count) as bed, bench_stack() as bench:
                image = bench.build_drill("fleet", "fleet")
                if bed is not None:
                    load_image(bed, image)
                overheads, approvals = measure(bench, "fleet" if bed else "local", image,
                                               args.rounds)
        except FleetUnavailable as reason:
            figure(f"{count} hosts", f"skipped: no network namespaces here ({reason})")
            continue
        figure(f"{count} host(s): orchestration overhead per step", spread(overheads, "ms",
                                                                         1000))
        figure(f"{count} host(s): overhead per step p50 (goal ≤ 50 ms)",
               f"{percentile(overheads, 0.5) * 1000:.0f}ms")
        figure(f"{count} host(s): approve → first rollout activity p50 (goal ≤ 100 ms)",
               f"{percentile(approvals, 0.5) * 1000:.0f}ms ({spread(approvals, 'ms', 1000)})")


if __name__ == "__main__":
    main()
