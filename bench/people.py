"""Benchmark 5: how fast Slipway answers people.

* approve: from sending the ``approve`` Update (signed with the approver's token) to the
  scheduling of the first rollout activity, and the Update's round trip; then the same from
  the start of a ``slipway approve`` process (the client, through the server, which signs
  and sends the Update);
* ``status``: the query's round trip on a running release, p50/p99;
* lanes: `lane create` / `lane delete` of a three-app lane come from bench/lane_bench.py.
Usage: ``.venv/bin/python -m bench.people [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime

from temporalio.api.enums.v1 import EventType

from bench.support import (
    PREFIX,
    REPO,
    BenchStack,
    await_status,
    bench_stack,
    figure,
    section,
    spread,
)
from schemas.models import ApprovalInput, ControlInput
from starter.service.controls import approval_proof
from starter.service.tokens import create_token
from workflows.release import ReleaseWorkflow

APP = f"{PREFIX}people"
STATUS_QUERIES = 200


async def approve_once(bench: BenchStack, token: str, label: str,
                       queries: list[float], by_client: bool = False, app: str = APP,
                       env: str = "bench@local", **fields: str) -> tuple[float, float]:
    """One release approved: (approve sent → first rollout activity scheduled, the
    approval's round trip), in seconds."""
    handle = await bench.start(app, env.split("@")[0], version_label=label,
                               requested_by="dev", **fields)
    await await_status(handle, ReleaseWorkflow.status, lambda s: s.awaiting == "approval",
                       "awaiting approval")
    for _ in range(STATUS_QUERIES // 5):
        began = time.monotonic()
        await handle.query(ReleaseWorkflow.status)
        queries.append(time.monotonic() - began)
    if by_client:
        sent = datetime.now(UTC)
        began = time.monotonic()
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "starter", "approve", app, env],
            cwd=REPO, env={**bench.client_environment(), "SLIPWAY_TOKEN": token},
            capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"slipway approve: {done.stderr.strip()[-300:]}")
    else:
        signed = await approval_proof(await bench.client(),
                                      bench.settings.approval_signing_secret(), token, "lead",
                                      app, env, "approve")
        sent = datetime.now(UTC)
        began = time.monotonic()
        await handle.execute_update(ReleaseWorkflow.approve, ApprovalInput(
            user="lead", comment="bench", proof=signed.proof))
    round_trip = time.monotonic() - began
    # Promote through the gate the environment starts with, so the release ends quickly.
    # (A first release has no old version to step away from: no gate, it ends by itself.)
    status = await await_status(
        handle, ReleaseWorkflow.status,
        lambda s: s.awaiting == "promote" or s.stage in ("succeeded", "rolled_back", "failed"),
        "at its gate or ended")
    if status.awaiting == "promote":
        await handle.execute_update(ReleaseWorkflow.promote_full, ControlInput(user="lead"))
    await handle.result()
    async for event in handle.fetch_history_events():
        if (event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and event.activity_task_scheduled_event_attributes.activity_type.name
                == "ensure_frontend"):
            scheduled = event.event_time.ToDatetime().replace(tzinfo=UTC)
            return (scheduled - sent).total_seconds(), round_trip
    raise RuntimeError("the release never scheduled its first rollout activity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    section("5. latency of people's actions")
    with bench_stack() as bench:
        bench.sample_app(APP, replicas=1, strategy="gray", stable_seconds=1,
                         steps=["gate", "100%"], approval="required", approvers=["lead"])
        _name, token = create_token(bench.store, "lead", roles=["approve"], actor="bench")
        to_first: list[float] = []
        round_trips: list[float] = []
        queries: list[float] = []
        for number in range(args.rounds):
            first, trip = asyncio.run(approve_once(bench, token, f"{number + 1}", queries))
            to_first.append(first)
            round_trips.append(trip)
        figure("approve → first rollout activity scheduled (goal ≤ 150 ms p50)",
               spread(to_first, "ms", 1000))
        figure("approve Update round trip (proof checked by the worker)",
               spread(round_trips, "ms", 1000))
        figure("status query", spread(queries, "ms", 1000))
        by_client = [asyncio.run(approve_once(bench, token, f"{args.rounds + number + 1}",
                                              [], by_client=True))
                     for number in range(args.rounds)]
        figure("`slipway approve` process start → first rollout activity (goal ≤ 450 ms "
               "p50: client start ≤ 300 ms + 150 ms)",
               spread([first for first, _ in by_client], "ms", 1000))
        figure("`slipway approve` process wall (client → server → worker → answer)",
               spread([trip for _, trip in by_client], "ms", 1000))


if __name__ == "__main__":
    main()
