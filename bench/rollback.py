"""Benchmark 3: how fast a bad version stops serving, and how fast `rollback` is.

Under a constant request loop through HAProxy (loopback, bounded), 2 replicas, gray:
* canary analysis: a build answering 10 % of requests with a 500 → from the first 5xx a user
  saw to the last answer from the canary (100 % of traffic on the old version);
* health: a build whose /healthz fails 3 s after start → from the first failed /healthz
  (probed on the canary's own port) to the last answer from the canary;
* `rollback` (the fast switch) → end to end, and from its start to the last answer from the
  version rolled back; the same with `--gradual` for comparison (goal: fast path < 3 s).
Usage: ``.venv/bin/python -m bench.rollback``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import docker
import httpx

from bench.support import PREFIX, BenchStack, bench_stack, figure, section
from catalogue.store import CatalogueError
from schemas.analysis import AnalysisPolicy, Metric
from starter.service.analysis import set_policy
from starter.service.changes import rollback_request
from starter.service.releases import follow
from tests.support.load import Outcomes, request_loop

APP = f"{PREFIX}rollback"


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
            await follow(handle, lambda _s: None)

        asyncio.run(run())
        took = time.monotonic() - began
    name = "rollback --gradual" if gradual else "rollback (fast switch; goal < 3 s)"
    figure(f"{name}: end to end", f"{took:.2f}s")
    figure(f"{name}: start → last answer from v{newest.baseline_version}",
           f"{last_from(outcomes, '3.0.0') - began:.2f}s  "
           f"(failed: {sum(v for k, v in outcomes.items() if not k.startswith('200 '))})")


def main() -> None:
    section("3. rollback and analysis (2 replicas, gray 1/50 %/100 %, stable 3 s)")
    with bench_stack() as bench:
        lb_port = bench.sample_app(APP, replicas=2, strategy="gray", stable_seconds=3)
        url = f"http://127.0.0.1:{lb_port}/"
        asyncio.run(bench.release(APP, version_label="1.0.0"))
        analysis_rollback(bench, url)
        health_rollback(bench, url)
        timed_rollback(bench, url, gradual=False)
        timed_rollback(bench, url, gradual=True)


if __name__ == "__main__":
    main()
