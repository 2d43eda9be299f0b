"""Benchmark: how long a swimlane takes to create and to delete on the embedded stack.

Runs against a throw-away state directory (its own SQLite file, Temporal dev server on a free
port, HAProxy) and the local Docker engine, with none of GitLab, Jenkins, Consul or DNS
configured, so a lane is its dyed Docker deployments behind per-app HAProxy frontends. It
registers three sample apps and releases each to ``test`` (their QA baseline), then per
round creates a lane with the three apps, times create (workflow start → stage ``active``),
checks each lane frontend answers over loopback (a bounded number of requests), times a push
deploy (the ``push`` Update a push to ``feature/<lane>`` sends: build the commit from a local
git repository, swap it in behind the app's lane frontend) under a bounded request loop, and
times the ``delete`` Update.

Then, as many rounds again, a one-service lane: a lane of one app (pay) only, which must run
one container (counted on the engine by its ``slipway.lane`` label, beside the three-app
lane's count) and is reached through pay's QA load balancer. Per round it times create
(start → active), sends a bounded number of requests to pay's QA frontend with the lane's
key (``x-slipway-lane``) and without, counting by ``x-slipway-lane-route`` which the lane's
instance served (keyed) and which the baseline served (unkeyed: no route header), and times
the ``delete`` Update under a bounded keyed request loop on that QA frontend (the lane's
route is removed before its container stops: no request may fail). Usage:
``.venv/bin/python bench/lane_bench.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
import httpx  # noqa: E402
from temporalio.client import Client, WorkflowHandle  # noqa: E402

from catalogue.store import Store  # noqa: E402
from integrations.haproxy.lane_table import LANE_HEADER, ROUTE_HEADER  # noqa: E402
from lanes.target import LABEL_LANE  # noqa: E402
from schemas.lanes import (  # noqa: E402
    DeleteInput,
    LanePushInput,
    LaneSpec,
    LaneStage,
    LaneStatus,
    ResourceKind,
    lane_workflow_id,
)
from schemas.models import ReleaseRequest  # noqa: E402
from schemas.settings import Settings, get_settings  # noqa: E402
from starter.cli.console import open_store  # noqa: E402
from starter.service.catalogue import add_env, mark_ready, register_app  # noqa: E402
from starter.service.releases import follow, start_release, validate_release  # noqa: E402
from starter.service.temporal_client import connect  # noqa: E402
from starter.stack import processes as stack  # noqa: E402
from tests.support.load import failures, request_loop  # noqa: E402
from workflows.swimlane import SwimlaneWorkflow  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sample-app"
PREFIX = "lanebench-"
APPS = [f"{PREFIX}cart", f"{PREFIX}pay", f"{PREFIX}web"]
# Variables that would switch on a lane integration: the bench runs on the embedded defaults.
INTEGRATIONS = ("SLIPWAY_GITLAB_URL", "SLIPWAY_JENKINS_URL", "SLIPWAY_CONSUL_URL",
                "SLIPWAY_DNS_SERVER", "SLIPWAY_RECEIVER_URL", "SLIPWAY_REGISTRY",
                "SLIPWAY_LANE_CLUSTER", "SLIPWAY_LANE_BROKER_URL")
CREATE_DEADLINE = 300.0  # seconds a lane may take to become active
DELETE_DEADLINE = 300.0
REQUESTS_PER_APP = 20  # loopback requests to each lane frontend per round
REQUEST_SECONDS = 15.0  # and at most this long for all of them
SEED_004 = "seed 004: 10–30 s per delete; goal < 5 s"
GOAL_SECONDS = 5.0
ONE_APP = APPS[1]  # the one-service lane's app
ROUTE_REQUESTS = 20  # requests with the lane's key, and as many without, per round
NO_ROUTE = "no route header"  # an unkeyed answer: the QA frontend's baseline served it


@dataclass
class Round:
    lane: str
    create: float
    delete: float
    answered: int  # requests answered 200 with the app's QA build
    sent: int
    push: float  # push Update round trip: build + swap of one app
    push_requests: int  # requests to that app's frontend during the push
    push_failed: int  # of which not 200
    containers: int  # labelled slipway.lane=<lane> on the engine while the lane is active


@dataclass
class OneServiceRound:
    lane: str
    create: float
    delete: float
    containers: int  # labelled slipway.lane=<lane> on the engine while the lane is active
    keyed: Counter[str]  # keyed requests to the app's QA frontend, by what served them
    unkeyed: Counter[str]  # requests without the key, the same way
    delete_requests: int  # keyed requests to the QA frontend during the delete
    delete_failed: int  # of which not a 200 with a body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def release_to_test(client: Client, settings: Settings, store: Store,
                          app: str) -> tuple[float, int]:
    """Register ``app`` from the sample and release it to ``test``: the lane's baseline;
    (seconds the release took, the port of its QA frontend)."""
    register_app(store, app, category="in-house", tier="non-core", owners=["bench"],
                 approvers=[], source=str(SAMPLE), description="", actor="bench")
    mark_ready(store, app, "bench")
    env = add_env(store, app, "test", cluster="local", replicas=1, cpu="", memory="",
                  ports=[8080], env_vars={}, runtime="docker", namespace="default",
                  health_path="/healthz", settings=settings, actor="bench",
                  strategy="recreate", approval="none")
    request, summary = validate_release(
        store, ReleaseRequest(app=app, env="test", version_label=f"{app}-qa"))
    began = time.monotonic()
    started = await start_release(client, settings, request, summary)
    await follow(started.handle, lambda _status: None)
    return time.monotonic() - began, env.lb_port


async def probe(urls: dict[str, str]) -> tuple[int, int]:
    """Requests to each app's lane frontend, bounded in count and time; (answered, sent)."""
    answered = sent = 0
    deadline = time.monotonic() + REQUEST_SECONDS
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(REQUESTS_PER_APP):
            for app, url in urls.items():
                if time.monotonic() > deadline:
                    return answered, sent
                sent += 1
                try:
                    response = await http.get(url)
                except httpx.HTTPError:
                    continue
                if response.status_code == 200 and response.text.strip() == \
                        f"sample-app {app}-qa":
                    answered += 1
    return answered, sent


def lane_containers(lane: str) -> int:
    """Containers on the local engine labelled as the lane's, stopped ones included."""
    engine = docker.from_env()
    try:
        return len(engine.containers.list(all=True, filters={"label": f"{LABEL_LANE}={lane}"}))
    finally:
        engine.close()


async def routes(url: str, app: str, lane: str) -> tuple[Counter[str], Counter[str]]:
    """ROUTE_REQUESTS requests to ``url`` with ``lane``'s key and as many without, bounded in
    time; each side counted by what served it: the route header's value (``lane`` or
    ``baseline``), NO_ROUTE when the answer has none, or what went wrong instead of a 200
    from the app's QA build."""
    keyed: Counter[str] = Counter()
    unkeyed: Counter[str] = Counter()
    deadline = time.monotonic() + REQUEST_SECONDS
    async with httpx.AsyncClient(timeout=5) as http:
        for _ in range(ROUTE_REQUESTS):
            for seen, headers in ((keyed, {LANE_HEADER: lane}), (unkeyed, {})):
                if time.monotonic() > deadline:
                    return keyed, unkeyed
                try:
                    response = await http.get(url, headers=headers)
                except httpx.HTTPError as error:
                    seen[type(error).__name__] += 1
                    continue
                if response.status_code != 200 or \
                        response.text.strip() != f"sample-app {app}-qa":
                    seen[f"{response.status_code} {response.text.strip()[:40]}"] += 1
                else:
                    seen[response.headers.get(ROUTE_HEADER, NO_ROUTE)] += 1
    return keyed, unkeyed


async def wait_active(handle: WorkflowHandle[SwimlaneWorkflow, LaneStatus], lane: str,
                      began: float) -> LaneStatus:
    """The lane's status once it is past creating (bounded by CREATE_DEADLINE); raises
    unless it is active."""
    while (status := await handle.query(SwimlaneWorkflow.status)).stage == LaneStage.CREATING:
        if time.monotonic() - began > CREATE_DEADLINE:
            raise RuntimeError(f"lane {lane} still creating after {CREATE_DEADLINE:.0f}s")
        await asyncio.sleep(0.05)
    if status.stage != LaneStage.ACTIVE:
        raise RuntimeError(f"lane {lane} ended {status.stage}: {status}")
    return status


def sample_repository(path: Path) -> str:
    """The sample app as a git repository with one commit (what a push would carry); its sha."""
    shutil.copytree(SAMPLE, path)
    git = ["git", "-C", str(path), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "lane work"]):
        subprocess.run([*git, *command], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


async def one_round(client: Client, settings: Settings, number: int,
                    repository: Path, sha: str) -> Round:
    lane = f"lb{number}-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    handle = await client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=lane, apps=APPS, requested_by="bench"),
        id=lane_workflow_id(lane), task_queue=settings.task_queue)
    status = await wait_active(handle, lane, began)
    created = time.monotonic() - began
    containers = lane_containers(lane)
    urls = {entry.app: str(entry.detail["url"]) for entry in status.ledger
            if entry.kind == ResourceKind.DEPLOYMENT}
    if not all(url.startswith("http://127.") for url in urls.values()):
        raise RuntimeError(f"lane frontends are not on loopback: {urls}")
    answered, sent = await probe(urls)

    pushed_app = APPS[1]
    with request_loop(urls[pushed_app], max_requests=5000, max_seconds=DELETE_DEADLINE) as seen:
        began = time.monotonic()
        await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app=pushed_app, source=str(repository), sha=sha, user="bench"))
        pushed = time.monotonic() - began
    if seen[f"200 sample-app {lane}-{sha[:12]}"] == 0:
        raise RuntimeError(f"lane {lane}: {pushed_app} never served the pushed build: {seen}")

    deleted = await timed_delete(handle, status)
    return Round(lane, created, deleted, answered, sent, pushed, seen.total(),
                 sum(failures(seen).values()), containers)


async def timed_delete(handle: WorkflowHandle[Any, Any], status: LaneStatus) -> float:
    """Send the lane's ``delete`` Update; its round trip in seconds, once every resource of
    the ledger ``status`` shows is removed."""
    began = time.monotonic()
    result = await asyncio.wait_for(
        handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="bench")),
        DELETE_DEADLINE)
    deleted = time.monotonic() - began
    if len(result.removed) != len(status.ledger):
        raise RuntimeError(f"lane {status.name}: {len(result.removed)} of {len(status.ledger)} "
                           "resources removed")
    return deleted


async def one_service_round(client: Client, settings: Settings, number: int,
                            qa_url: str) -> OneServiceRound:
    """A lane of ONE_APP only: create, count its containers, route through the app's QA
    frontend ``qa_url`` with the lane's key and without, delete under keyed requests."""
    lane = f"lb1s{number}-{uuid.uuid4().hex[:6]}"
    began = time.monotonic()
    handle = await client.start_workflow(
        SwimlaneWorkflow.run, LaneSpec(name=lane, apps=[ONE_APP], requested_by="bench"),
        id=lane_workflow_id(lane), task_queue=settings.task_queue)
    status = await wait_active(handle, lane, began)
    created = time.monotonic() - began
    containers = lane_containers(lane)
    if containers != 1:
        raise RuntimeError(f"one-service lane {lane} runs {containers} containers, not 1")
    deployments = [entry for entry in status.ledger if entry.kind == ResourceKind.DEPLOYMENT]
    route = (deployments[0].detail.get("route") or {}) if len(deployments) == 1 else {}
    if route.get("lane") != lane or not route.get("env_key"):
        raise RuntimeError(f"lane {lane}: {ONE_APP} is not routed from its QA frontend: "
                           f"{[entry.detail for entry in deployments]}")
    keyed, unkeyed = await routes(qa_url, ONE_APP, lane)
    if keyed["lane"] != ROUTE_REQUESTS or unkeyed[NO_ROUTE] != ROUTE_REQUESTS:
        raise RuntimeError(f"lane {lane} through {qa_url}: keyed {dict(keyed)}, unkeyed "
                           f"{dict(unkeyed)}; want {ROUTE_REQUESTS} 'lane' and "
                           f"{ROUTE_REQUESTS} {NO_ROUTE!r}")

    with request_loop(qa_url, max_requests=5000, max_seconds=DELETE_DEADLINE,
                      headers={LANE_HEADER: lane}) as seen:
        deleted = await timed_delete(handle, status)
    if (left := lane_containers(lane)) != 0:
        raise RuntimeError(f"lane {lane}: {left} containers left after the delete")
    return OneServiceRound(lane, created, deleted, containers, keyed, unkeyed, seen.total(),
                           sum(failures(seen).values()))


def spread(values: list[float]) -> str:
    return (f"median {statistics.median(values):.1f} s (min {min(values):.1f}, "
            f"max {max(values):.1f})")


def counted(seen: Counter[str]) -> str:
    return ", ".join(f"{count} {what}" for what, count in seen.most_common())


async def run(settings: Settings, store: Store, rounds: int) -> None:
    client = await connect(settings)
    repository = settings.state_dir / "pushed-repository"
    sha = sample_repository(repository)
    released = await asyncio.gather(*(release_to_test(client, settings, store, app)
                                      for app in APPS))
    seconds = [s for s, _ in released]
    qa_ports = {app: port for app, (_, port) in zip(APPS, released, strict=True)}
    print(f"released {', '.join(APPS)} to test in "
          f"{', '.join(f'{s:.1f}' for s in seconds)} s (concurrently)")
    print(f"{'round':<6} {'lane':<12} {'create s':>9} {'push s':>7} {'delete s':>9} "
          f"{'containers':>10}  lane frontends; requests during the push")
    results: list[Round] = []
    for number in range(1, rounds + 1):
        result = await one_round(client, settings, number, repository, sha)
        results.append(result)
        print(f"{number:<6} {result.lane:<12} {result.create:>9.1f} {result.push:>7.1f} "
              f"{result.delete:>9.1f} {result.containers:>10}  {result.answered}/"
              f"{result.sent} answered by the QA build; {result.push_failed}/"
              f"{result.push_requests} failed")
    creates = [r.create for r in results]
    deletes = [r.delete for r in results]
    print(f"create (start → active), {len(APPS)} apps: {spread(creates)}")
    print(f"push deploy (build + swap, one app): {spread([r.push for r in results])}, "
          f"{sum(r.push_failed for r in results)} failed requests during pushes")
    print(f"delete (Update round trip), {len(APPS)} apps: {spread(deletes)}")
    verdict = "meets" if max(deletes) < GOAL_SECONDS else "misses"
    print(f"{SEED_004}; this run {verdict} the goal (slowest delete {max(deletes):.1f} s)")

    qa_url = f"http://{settings.lb_bind_address}:{qa_ports[ONE_APP]}/"
    print(f"\none-service lane: {ONE_APP} only, keyed and unkeyed requests through its QA "
          f"frontend {qa_url}, the delete under keyed requests there")
    print(f"{'round':<6} {'lane':<14} {'create s':>9} {'delete s':>9} {'containers':>10}  "
          f"{ROUTE_REQUESTS} keyed / {ROUTE_REQUESTS} unkeyed served by; keyed requests "
          "during the delete")
    singles: list[OneServiceRound] = []
    for number in range(1, rounds + 1):
        single = await one_service_round(client, settings, number, qa_url)
        singles.append(single)
        print(f"{number:<6} {single.lane:<14} {single.create:>9.1f} {single.delete:>9.1f} "
              f"{single.containers:>10}  keyed: {counted(single.keyed)}; unkeyed: "
              f"{counted(single.unkeyed)}; {single.delete_failed}/{single.delete_requests} "
              "failed")
    three = sorted({r.containers for r in results})
    print(f"containers per lane: one-service {singles[0].containers} vs {len(APPS)}-app "
          f"{', '.join(map(str, three))}")
    print(f"create (start → active), one-service lane: {spread([s.create for s in singles])}")
    print(f"delete (Update round trip), one-service lane: {spread([s.delete for s in singles])}"
          f", {sum(s.delete_failed for s in singles)} of "
          f"{sum(s.delete_requests for s in singles)} keyed requests failed during deletes")
    print(f"a one-service lane costs {singles[0].containers} container, and takes "
          f"{statistics.median(s.create for s in singles):.1f} s to create and "
          f"{statistics.median(s.delete for s in singles):.1f} s to delete (medians of "
          f"{len(singles)}; {len(APPS)}-app lane: {', '.join(map(str, three))} containers, "
          f"{statistics.median(creates):.1f} s and {statistics.median(deletes):.1f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="lanes created and deleted")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    state = Path(tempfile.mkdtemp(prefix="slipway-lane-bench-"))
    for name in INTEGRATIONS:
        os.environ.pop(name, None)
    os.environ.update(SLIPWAY_STATE_DIR=str(state), SLIPWAY_TASK_QUEUE="lane-bench",
                      SLIPWAY_DATABASE_URL="", SLIPWAY_NOTIFIER="console",
                      SLIPWAY_TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
                      SLIPWAY_TEMPORAL_UI_PORT=str(free_port()),
                      SLIPWAY_LB_PORT_START=str(free_port()),
                      # The pushed repository lives in the bench's state directory.
                      SLIPWAY_SOURCE_ROOTS=json.dumps([str(SAMPLE.parent), str(state)]))
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store()
    finished = False
    try:
        stack.start_temporal(settings, background=True)
        stack.start_worker(settings, background=True)
        stack.start_agents(settings, background=True)
        asyncio.run(run(settings, store, args.rounds))
        finished = True
    finally:
        # A throw-away stack: its load balancers go too (`down --applications`).
        for line in stack.stop_stack(settings) + stack.stop_load_balancers(settings):
            print(f"stopped {line}")
        engine = docker.from_env()
        for container in engine.containers.list(all=True, filters={"label": "slipway.app"}):
            if container.labels["slipway.app"].startswith(PREFIX):
                container.remove(force=True)
        if finished:
            shutil.rmtree(state, ignore_errors=True)
        else:
            print(f"kept {state} (worker and Temporal logs under logs/)")


if __name__ == "__main__":
    main()
