"""Benchmark 1: a release side by side with what our users run today.

Same image (the sample app, v1 → v2), same 4 replicas, the same HAProxy in front, the same
constant request loop (loopback, bounded): Slipway gray (25 %, 50 %, 100 %, stable 5 s),
rolling (batches of 1, stable 5 s) and recreate, and seed 000's upgrade: `docker-compose up
-d` after changing the image tag, with the four containers behind a health-checked HAProxy.
Prints wall time, failed requests and p50/p99/max latency of each.
Usage: ``.venv/bin/python bench/peers.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

import docker
import httpx

from bench.support import (
    PREFIX,
    SAMPLE,
    BenchStack,
    bench_stack,
    figure,
    free_port,
    section,
    spread,
)
from integrations.haproxy.router import HaproxyRouter
from tests.support.load import Outcomes, failures, request_loop

REPLICAS = 4
STABLE_SECONDS = 5
COMPOSE_PROJECT = "slipwaybenchcompose"
COMPOSE_IMAGE = f"slipway/{PREFIX}compose"


def report(name: str, seconds: float, outcomes: Outcomes) -> None:
    failed = sum(failures(outcomes).values())
    figure(f"{name}: wall", f"{seconds:.1f}s")
    figure(f"{name}: requests failed / sent", f"{failed} / {sum(outcomes.values())}"
           + (f"  {dict(failures(outcomes))}" if failed else ""))
    figure(f"{name}: latency", spread(outcomes.latencies, "ms", 1000))


def slipway_release(bench: BenchStack, strategy: str) -> None:
    app = f"{PREFIX}{strategy}"
    steps = ["25%", "50%", "100%"] if strategy == "gray" else None
    lb_port = bench.sample_app(app, replicas=REPLICAS, strategy=strategy,
                               stable_seconds=STABLE_SECONDS, steps=steps)
    asyncio.run(bench.release(app, version_label="1.0.0"))
    with request_loop(f"http://127.0.0.1:{lb_port}/", max_requests=50_000,
                      max_seconds=180, pause=0.005) as outcomes:
        began = time.monotonic()
        asyncio.run(bench.release(app, version_label="2.0.0"))
        seconds = time.monotonic() - began
    report(f"slipway {strategy}", seconds, outcomes)


def compose_file(directory: Path, ports: list[int]) -> Path:
    services = "".join(
        f"  app{index}:\n"
        f"    image: {COMPOSE_IMAGE}:${{TAG}}\n"
        f"    ports: ['127.0.0.1:{port}:8080']\n"
        for index, port in enumerate(ports))
    path = directory / "docker-compose.yml"
    path.write_text(f"version: '2.4'\nservices:\n{services}")
    return path


def compose(directory: Path, tag: str, *args: str) -> None:
    subprocess.run(["docker-compose", "-p", COMPOSE_PROJECT, *args], cwd=directory,
                   env={"TAG": tag, "PATH": "/usr/local/bin:/usr/bin:/bin"}, check=True,
                   capture_output=True)


def serves_only(url: str, version: str, tries: int = 8) -> bool:
    try:
        return all(httpx.get(url, timeout=2).text.strip() == f"sample-app {version}"
                   for _ in range(tries))
    except httpx.HTTPError:
        return False


def compose_release(bench: BenchStack) -> None:
    engine = docker.from_env()
    for tag in ("1.0.0", "2.0.0"):
        engine.images.build(path=str(SAMPLE), tag=f"{COMPOSE_IMAGE}:{tag}", rm=True,
                            buildargs={"BASE_IMAGE": bench.settings.base_image,
                                       "VERSION": tag})
    ports = [free_port() for _ in range(REPLICAS)]
    lb_port = free_port()
    key = f"{PREFIX}compose-local"
    router = HaproxyRouter(bench.settings.state_dir, bench.settings.haproxy_bin)
    directory = Path(tempfile.mkdtemp(prefix="slipway-bench-compose-"))
    compose_file(directory, ports)
    url = f"http://127.0.0.1:{lb_port}/"
    try:
        compose(directory, "1.0.0", "up", "-d")
        router.ensure_frontend(key, lb_port, "/healthz")
        for index, port in enumerate(ports):
            router.add_server(key, f"v1-{index}", "127.0.0.1", port)
        deadline = time.monotonic() + 60
        while not serves_only(url, "1.0.0"):
            assert time.monotonic() < deadline, "the compose v1 never served"
            time.sleep(0.2)
        with request_loop(url, max_requests=50_000, max_seconds=120,
                          pause=0.005) as outcomes:
            began = time.monotonic()
            compose(directory, "2.0.0", "up", "-d")  # seed 000: new tag, `up -d`
            while not serves_only(url, "2.0.0"):
                assert time.monotonic() - began < 60, "the compose v2 never served"
                time.sleep(0.05)
            seconds = time.monotonic() - began
        report("docker-compose up -d", seconds, outcomes)
        stalls = outcomes.latencies
        figure("docker-compose up -d: longest request", f"{max(stalls):.2f}s" if stalls else "-")
    finally:
        compose(directory, "2.0.0", "down")
        router.stop(key)
        for tag in ("1.0.0", "2.0.0"):
            engine.images.remove(f"{COMPOSE_IMAGE}:{tag}", force=True)


def main() -> None:
    section(f"1. release vs peers ({REPLICAS} replicas, v1 → v2, request loop through "
            "HAProxy on loopback)")
    with bench_stack() as bench:
        for strategy in ("gray", "rolling", "recreate"):
            slipway_release(bench, strategy)
        compose_release(bench)


if __name__ == "__main__":
    main()
