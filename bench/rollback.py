"""Benchmark 3: how fast a bad version stops serving, and how fast `rollback` is.

Under a constant request loop through HAProxy (loopback, bounded), 2 replicas, gray:
* canary analysis: a build answering 10 % of requests with a 500 → from the first 5xx a user
  saw to the last answer from the canary (100 % of traffic on the old version);
* health: a build whose /healthz fails 3 s after start → from the first failed /healthz
  (probed on the canary's own port) to the last answer from the canary;
* `rollback` (the fast switch) → end to end, and from its start to the last answer from the
  version rolled back; the same with `--gradual` for comparison;
* `slipway rollback APP ENV --wait` as a person runs it (a new client process, through the
  stack's server: catalogue checks, the workflow until the old version serves all traffic):
  its wall time against the goal (≤ 3 s at p50 over ``--repeat`` runs), how much of it
  passes before the workflow starts, and how long after it returned the replaced version's
  containers were gone (their removal goes on in the background, in the same workflow).
Usage: ``.venv/bin/python -m bench.rollback [--quick] [--repeat N]`` (``--quick``: the
fast-rollback figures only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import threading
import time

import docker
import httpx

from bench.support import (
    PREFIX,
    REPO,
    BenchStack,
    bench_stack,
    figure,
    percentile,
    section,
    spread,
)
from catalogue.store import CatalogueError
from schemas.analysis import AnalysisPolicy, Metric
from starter.service.analysis import set_policy
from starter.service.changes import rollback_request
from starter.service.releases import follow
from tests.support.load import Outcomes, request_loop
from workflows.release import release_workflow_id

APP = f"{PREFIX}rollback"
# Issue #29: `rollback --wait` returns within this, CLI process included.
CLI_GOAL_SECONDS = 3.0


def last_from(outcomes: Outcomes, version: str) -> float:
    return max(t for key, t in outcomes.last.items() if version in key)


def analysis_rollback(bench: BenchStack, url: str) -> None:
    set_policy(bench.store, APP, "bench", AnalysisPolicy(metrics=[Metric(
        name="errors", query="error_rate", max=0.02, min_sample=10, interval_seconds=2)]),
        settings=bench.settings, actor="bench")
    bad = bench.build_drill("5xx", "9.0.0-5xx", ERROR_PERCENT="10")
    with request_loop(url, max_requests=20_000, max_seconds=120, pause=0.005) as outcomes:
        try:
            asyncio.run(bench.release(APP, image=bad))
        except CatalogueError as error:
            reason = str(error).split("release rolled_back: ")[-1]
    first_5xx = min(t for key, t in outcomes.first.items() if key.startswith("500 "))
    figure("analysis: first 5xx → 100 % on the old version",
           f"{last_from(outcomes, '9.0.0-5xx') - first_5xx:.2f}s")
    figure("analysis: 5xx users saw / requests",
           f"{sum(c for k, c in outcomes.items() if k.startswith('500 '))} / "
           f"{sum(outcomes.values())}  ({reason})")
    set_policy(bench.store, APP, "bench", None, settings=bench.settings, actor="bench")


def health_rollback(bench: BenchStack, url: str) -> None:
    bad = bench.build_drill("sick", "9.0.0-sick", FAIL_HEALTH_AFTER="3")
    engine = docker.from_env()
    failed_at: list[float] = []
    stop = threading.Event()

    def probe_canary() -> None:
        # The canary's own port, as the first failed health check sees it.
        while not stop.is_set() and not failed_at:
            for container in engine.containers.list(filters={"label": f"slipway.app={APP}"}):
                if bad not in (container.image.tags or []):
                    continue
                ports = container.ports.get("8080/tcp") or []
                if not ports:
                    continue
                try:
                    answer = httpx.get(f"http://127.0.0.1:{ports[0]['HostPort']}/healthz",
                                       timeout=1)
                    if answer.status_code != 200:
                        failed_at.append(time.monotonic())
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)

    prober = threading.Thread(target=probe_canary, daemon=True)
    with request_loop(url, max_requests=20_000, max_seconds=120, pause=0.005) as outcomes:
        prober.start()
        with contextlib.suppress(CatalogueError):  # rolled back, as it should be
            asyncio.run(bench.release(APP, image=bad))
        stop.set()
    if failed_at:
        figure("health: first failed /healthz → 100 % on the old version",
               f"{last_from(outcomes, '9.0.0-sick') - failed_at[0]:.2f}s")
    else:
        figure("health: first failed /healthz → 100 % on the old version",
               "(the prober saw no failure)")


def timed_rollback(bench: BenchStack, url: str, gradual: bool) -> None:
    newest = asyncio.run(bench.release(APP, version_label="3.0.0"))
    with request_loop(url, max_requests=20_000, max_seconds=120, pause=0.005) as outcomes:
        began = time.monotonic()

        async def run() -> None:
            handle = await bench.start_request(rollback_request(
                bench.store, APP, "bench", actor="bench", gradual=gradual))
            await follow(handle, lambda _s: None, early=True)

        asyncio.run(run())
        took = time.monotonic() - began
    name = "rollback --gradual" if gradual else "rollback (fast switch, service call)"
    figure(f"{name}: end to end", f"{took:.2f}s")
    figure(f"{name}: start → last answer from v{newest.baseline_version}",
           f"{last_from(outcomes, '3.0.0') - began:.2f}s  "
           f"(failed: {sum(v for k, v in outcomes.items() if not k.startswith('200 '))})")


def containers_of(version: int) -> int:
    """Containers of ``version`` (the low-level list: no inspect that a removal could race)."""
    return len(docker.from_env().api.containers(all=True, filters={
        "label": [f"slipway.app={APP}", f"slipway.version={version}"]}))


def cli_rollback(bench: BenchStack, url: str, label: str) -> float | None:
    """`slipway rollback APP bench --wait` in a new process, timed from its start to its
    exit (the figure the goal is about), after a release of ``label``; its wall time."""
    newest = asyncio.run(bench.release(APP, version_label=label))
    replaced = newest.baseline_version or 0
    # The `slipway` client, through the stack's server (which runs the command in a process
    # forked with the command tree loaded), as a person runs it.
    command = [sys.executable, "-m", "starter", "rollback", APP, "bench", "--wait"]
    environment = {**bench.client_environment(), "COLUMNS": "240"}
    with request_loop(url, max_requests=20_000, max_seconds=120, pause=0.005) as outcomes:
        began, began_at = time.monotonic(), time.time()
        done = subprocess.run(command, cwd=REPO, env=environment, capture_output=True,
                              text=True, timeout=120)
        took = time.monotonic() - began
        left = containers_of(replaced)
        while containers_of(replaced) and time.monotonic() - began < 60:
            time.sleep(0.05)
        gone = time.monotonic() - began
    if done.returncode != 0:
        figure("rollback --wait (CLI)", f"failed ({done.returncode}): "
               f"{(done.stderr or done.stdout).strip()[-300:]}")
        return None
    started = asyncio.run(workflow_started(bench)) - began_at
    verdict = "met" if took <= CLI_GOAL_SECONDS else "MISSED"
    figure(f"rollback --wait (CLI, fast switch): wall (goal ≤ {CLI_GOAL_SECONDS:.0f} s)",
           f"{took:.2f}s  ({verdict})")
    figure("  of which: client start → workflow started", f"{started:.2f}s")
    back = last_from(outcomes, label) - began
    figure(f"  start → last answer from v{replaced}",
           f"{back:.2f}s  "
           f"(failed: {sum(v for k, v in outcomes.items() if not k.startswith('200 '))})")
    figure(f"  last answer from v{replaced} → CLI returned", f"{took - back:.2f}s")
    figure(f"  v{replaced} containers left at return → gone",
           f"{left} → gone after {gone:.2f}s (removed in the background)")
    for line in done.stdout.strip().splitlines()[-2:]:
        print(f"    | {line.strip()}", flush=True)
    return took


async def workflow_started(bench: BenchStack) -> float:
    """When the environment's latest release workflow started (epoch seconds)."""
    client = await bench.client()
    description = await client.get_workflow_handle(
        release_workflow_id(APP, "bench@local")).describe()
    return description.start_time.timestamp()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="only the fast rollback (service call and CLI)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="CLI rollbacks to time (each after a release of its own)")
    args = parser.parse_args(argv)
    section("3. rollback and analysis (2 replicas, gray 1/50 %/100 %, stable 3 s)")
    with bench_stack() as bench:
        lb_port = bench.sample_app(APP, replicas=2, strategy="gray", stable_seconds=3)
        url = f"http://127.0.0.1:{lb_port}/"
        asyncio.run(bench.release(APP, version_label="1.0.0"))
        if not args.quick:
            analysis_rollback(bench, url)
            health_rollback(bench, url)
        timed_rollback(bench, url, gradual=False)
        walls = [took for i in range(args.repeat)
                 if (took := cli_rollback(bench, url, f"4.0.{i}")) is not None]
        verdict = ("met" if walls and percentile(walls, 0.5) <= CLI_GOAL_SECONDS
                   else "MISSED")
        figure(f"rollback --wait (CLI): {len(walls)} runs (goal ≤ {CLI_GOAL_SECONDS:.0f} s "
               f"at p50: {verdict})", spread(walls))
        if not args.quick:
            timed_rollback(bench, url, gradual=True)


if __name__ == "__main__":
    main()
