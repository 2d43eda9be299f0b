"""Benchmark: how long releases of the sample app take on the embedded stack, and what a
client sees meanwhile.

Runs against a throw-away state directory (its own SQLite file, Temporal dev server on a
free port, HAProxy) and the local Docker engine. For each strategy it releases v1, then v2
under a bounded request loop through HAProxy (loopback only), and prints the durations and
the request outcomes. Usage: ``.venv/bin/python bench/release_bench.py [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from catalogue.store import Store  # noqa: E402
from schemas.models import ReleaseRequest  # noqa: E402
from schemas.settings import Settings, get_settings  # noqa: E402
from starter.cli.console import open_store  # noqa: E402
from starter.service.catalogue import add_env, mark_ready, register_app  # noqa: E402
from starter.service.releases import follow, start_release, validate_release  # noqa: E402
from starter.service.temporal_client import connect  # noqa: E402
from starter.stack import processes as stack  # noqa: E402
from tests.support.load import failures, request_loop  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-app"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def timed_release(settings: Settings, store: Store, app: str) -> float:
    client = await connect(settings)
    request, summary = validate_release(store, ReleaseRequest(app=app, env="bench"))
    began = time.monotonic()
    started = await start_release(client, settings, request, summary)
    await follow(started.handle, lambda _status: None)
    return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="v2 releases per strategy")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    os.environ.update(SLIPWAY_STATE_DIR=str(state), SLIPWAY_TASK_QUEUE="bench",
                      SLIPWAY_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
                      SLIPWAY_TEMPORAL_UI_PORT=str(free_port()),
                      SLIPWAY_LB_PORT_START=str(free_port()))
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store()
    stack.start_temporal(settings, background=True)
    stack.start_worker(settings, background=True)
    try:
        print(f"{'strategy':<10} {'release':<8} {'seconds':>8}  requests during the release")
        for strategy in ("recreate", "gray"):
            app = f"bench-{strategy}"
            register_app(store, app, category="in-house", tier="non-core", owners=["bench"],
                         approvers=[], source=str(SAMPLE), description="", actor="bench")
            mark_ready(store, app, "bench")
            env = add_env(store, app, "bench", cluster="local", replicas=2, cpu="", memory="",
                          ports=[8080], env_vars={}, runtime="docker", namespace="default",
                          health_path="/healthz", settings=settings, actor="bench",
                          strategy=strategy, stable_seconds=2, approval="none")
            first = asyncio.run(timed_release(settings, store, app))
            print(f"{strategy:<10} {'v1':<8} {first:>8.1f}")
            for round_number in range(args.rounds):
                url = f"http://127.0.0.1:{env.lb_port}/"
                with request_loop(url, max_requests=20000, max_seconds=300) as outcomes:
                    seconds = asyncio.run(timed_release(settings, store, app))
                total = sum(outcomes.values())
                print(f"{strategy:<10} {f'v{round_number + 2}':<8} {seconds:>8.1f}  "
                      f"{total} sent, failed: {failures(outcomes) or 0}")
    finally:
        for line in stack.stop_stack(settings):
            print(f"stopped {line}")
        engine = docker.from_env()
        for container in engine.containers.list(all=True, filters={"label": "slipway.app"}):
            if container.labels["slipway.app"].startswith("bench-"):
                container.remove(force=True)


if __name__ == "__main__":
    main()
