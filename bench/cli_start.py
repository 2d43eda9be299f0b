"""Benchmark 7: how fast the ``slipway`` client answers, through the server.

Each figure is the wall time of a new ``python -m starter …`` process, from its start to its
exit, against a stack whose server runs (goal ≤ 0.3 s for ``--help`` and ``status``). The
client imports nothing of the platform; the server runs the command in a process forked
from one that has the command tree loaded.
Usage: ``.venv/bin/python -m bench.cli_start [--runs 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time

from bench.support import PREFIX, REPO, BenchStack, bench_stack, figure, percentile, section

APP = f"{PREFIX}cli"
GOAL_SECONDS = 0.3


def timed(bench: BenchStack, args: list[str], runs: int) -> list[float]:
    walls: list[float] = []
    for _ in range(runs):
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "starter", *args], cwd=REPO,
                              env=bench.client_environment(), capture_output=True, text=True,
                              timeout=60)
        walls.append(time.monotonic() - began)
        if done.returncode != 0:
            raise RuntimeError(f"slipway {' '.join(args)}: {done.stderr.strip()[-300:]}")
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    section("7. the slipway client through the server (new process each time)")
    with bench_stack() as bench:
        bench.sample_app(APP, replicas=1, strategy="recreate", stable_seconds=0)
        asyncio.run(bench.release(APP, version_label="1.0.0"))
        for words in (["--help"], ["status", APP, "bench"], ["app", "list"], ["whoami"]):
            walls = timed(bench, words, args.runs)
            median = percentile(walls, 0.5)
            goal = (f"goal ≤ {GOAL_SECONDS} s: {'met' if median <= GOAL_SECONDS else 'MISSED'}"
                    if words[0] in ("--help", "status") else "no goal")
            figure(f"slipway {' '.join(words)}",
                   f"p50 {median * 1000:.0f} ms, p90 {percentile(walls, 0.9) * 1000:.0f} ms "
                   f"({goal})")


if __name__ == "__main__":
    main()
