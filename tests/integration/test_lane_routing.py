"""Lanes of only what changed, end to end: a call chain a → b → c released to QA on Docker
hosts in network namespaces (each its own dockerd) behind real HAProxy, a lane holding only
b', a real Redis for its messages, the Temporal dev server and the worker.

Requests carrying the lane's key go a → b' → c, the rest a → b → c, with no failed request
while the lane is created, updated (a push), its b' stopped (keyed requests fall back to b)
and deleted; a lane message is consumed by the lane alone (lane-consume), exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import docker
import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlmodel import select
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from catalogue.releases import env_key
from catalogue.store import Store
from catalogue.tables import Application, Environment
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyRouter
from lanes.messages import LaneConsumer, LaneMessage, produce
from schemas.lanes import (
    DeleteInput,
    LanePushInput,
    LaneSpec,
    LaneStage,
    MessagePolicy,
    ResourceKind,
    lane_workflow_id,
)
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_release_docker import SAMPLE
from tests.integration.test_swimlane_docker import commit_sample
from tests.support.fleet import Fleet, fleet  # noqa: F401  (the session's test bed)
from tests.support.load import Outcomes, failures, request_loop
from tests.support.redis_server import RedisServer
from tests.support.registry import RegistryServer
from workflows.swimlane import SwimlaneWorkflow

pytestmark = pytest.mark.integration

CLUSTER = "fleet"
TOPIC = "orders"
# The chain's services, each named by its last letter in the chain's answers.
APPS = ["chain-a", "chain-b", "chain-c"]


@pytest.fixture
def settings(settings: Settings, fleet: Fleet, registry_server: RegistryServer,  # noqa: F811
             redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The integration settings with the test bed's hosts as cluster ``fleet``, the load
    balancers on the test bed's root address (where the hosts' containers reach them), lanes
    on the fleet and their messages on the session's Redis."""
    fleet.forward(int(registry_server.host.rsplit(":", 1)[1]))
    values = settings.model_copy(update={
        "clusters": {**settings.clusters, CLUSTER: fleet.cluster()},
        "lb_bind_address": fleet.gateway,
        "credentials": {**settings.credentials,
                        "lane-broker": SecretStr(redis_server.password)}})
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    monkeypatch.setenv("SLIPWAY_LANE_CLUSTER", CLUSTER)
    monkeypatch.setenv("SLIPWAY_LANE_BROKER_URL", redis_server.url)
    monkeypatch.setenv("SLIPWAY_LANE_TOPICS", f'["{TOPIC}"]')
    return values


@pytest.fixture
def cleanup(fleet: Fleet) -> Iterator[None]:  # noqa: F811
    yield
    fleet.remove_app_containers(*APPS)


@pytest_asyncio.fixture
async def lane(temporal: WorkflowEnvironment) -> AsyncIterator[str]:
    """The test's lane name; its workflow, if a failed test left it running, is terminated
    (later tests list the session's running workflows)."""
    name = f"l{uuid.uuid4().hex[:6]}"
    yield name
    handle = temporal.client.get_workflow_handle(lane_workflow_id(name))
    with contextlib.suppress(RPCError):
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("the test failed before deleting its lane")


def register_chain(store: Store, settings: Settings, gateway: str) -> dict[str, int]:
    """a → b → c in QA, each calling the next one's QA load balancer; their ports."""
    ports: dict[str, int] = {}
    downstream = ""
    for app in reversed(APPS):
        register_app(store, app, category="in-house", tier="non-core", owners=["qa"],
                     approvers=[], source=str(SAMPLE), description="", actor="qa")
        mark_ready(store, app, "qa")
        variables = {"SERVICE_NAME": app[-1], **({"DOWNSTREAM_URL": downstream}
                                                  if downstream else {})}
        add_env(store, app, "test", cluster=CLUSTER, replicas=1, cpu="", memory="",
                ports=[8080], env_vars=variables, runtime="docker", namespace="default",
                health_path="/healthz", settings=settings, actor="qa", strategy="recreate",
                approval="none")
        with store.session() as session:
            registered = session.exec(select(Application).where(Application.name == app)).one()
            ports[app] = session.exec(select(Environment).where(
                Environment.app_id == registered.id)).one().lb_port
        downstream = f"http://{gateway}:{ports[app]}"
    return ports


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  app: str) -> None:
    request, summary = validate_release(
        store, ReleaseRequest(app=app, env="test", version_label=f"{app}-qa"))
    started = await start_release(temporal.client, settings, request, summary)
    await follow(started.handle, lambda _status: None)


def chain(lane: str = "", b: str = "b chain-b-qa") -> str:
    """The chain's answer: each hop's name and version, and the key it received."""
    seen = f" lane={lane}" if lane else ""
    return f"a chain-a-qa{seen} -> {b}{seen} -> c chain-c-qa{seen}"


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds:.0f}s: {what}"
        time.sleep(0.1)


def served(seen: Outcomes, answer: str) -> Callable[[], bool]:
    return lambda: seen[f"200 {answer}"] > 5


def lane_containers(fleet: Fleet, lane: str) -> list[docker.models.containers.Container]:  # noqa: F811
    found = []
    for host in fleet.hosts:
        client = host.client()
        found += client.containers.list(all=True, filters={"label": f"slipway.lane={lane}"})
    return found


async def test_keyed_requests_take_the_lane_and_the_rest_the_baseline(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    fleet: Fleet, redis_server: RedisServer, cleanup: None, tmp_path: Path,  # noqa: F811
    lane: str,
) -> None:
    gateway = fleet.gateway
    ports = register_chain(store, settings, gateway)
    for app in APPS:
        await release(temporal, settings, store, app)
    entry = f"http://{gateway}:{ports['chain-a']}/cgi-bin/chain"
    assert httpx.get(entry, timeout=10).text.strip() == chain()

    keyed = {"x-slipway-lane": lane}
    loop = partial(request_loop, test_hosts=(gateway,), max_requests=4000, max_seconds=400,
                   pause=0.05, body_chars=120)
    redis = redis_server.client()
    baseline_consumer = LaneConsumer(redis, TOPIC, "chain-b", "b-0")
    with loop(entry, headers=keyed) as seen, loop(entry) as plain:
        handle = await temporal.client.start_workflow(
            SwimlaneWorkflow.run, LaneSpec(name=lane, apps=["chain-b"], requested_by="dev",
                                           messages=MessagePolicy.LANE_CONSUME),
            id=lane_workflow_id(lane), task_queue=settings.task_queue)
        deadline = time.monotonic() + 180
        while (status := await handle.query(SwimlaneWorkflow.status)).stage == \
                LaneStage.CREATING:
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status.stage == LaneStage.ACTIVE, status
        # Only what changed: one container, b's, in the lane.
        dyed = lane_containers(fleet, lane)
        assert [c.labels["slipway.app"] for c in dyed] == ["chain-b"]
        wait_until(served(seen, chain(lane, f"b@{lane} chain-b-qa")), 30, "a → b' → c")

        # Updated: a push to feature/<lane> of b, built and swapped in behind the route.
        sha = commit_sample(tmp_path / "b-repo")
        await handle.execute_update(SwimlaneWorkflow.push, LanePushInput(
            app="chain-b", source=str(tmp_path / "b-repo"), sha=sha, user="dev"))
        pushed = chain(lane, f"b@{lane} {lane}-{sha[:12]}")
        wait_until(served(seen, pushed), 30, "a → b'(pushed) → c")
    assert failures(seen) == {} and failures(plain) == {}, (seen, plain)
    assert set(plain) == {f"200 {chain()}"}, plain
    assert {f"200 {chain(lane)}", f"200 {chain(lane, f'b@{lane} chain-b-qa')}",
            f"200 {pushed}"} >= set(seen), seen

    # Its message, produced in the lane, goes to the lane's consumer group alone (the group
    # its instance was told to use), exactly once; an unkeyed one to the baseline.
    [instance] = lane_containers(fleet, lane)
    group = next(var.split("=", 1)[1] for var in instance.attrs["Config"]["Env"]
                 if var.startswith("SLIPWAY_CONSUMER_GROUP_ORDERS="))
    lane_consumer = LaneConsumer(redis, TOPIC, group, "b-lane-0", lane=lane)
    produce(redis, TOPIC, {"order": "in-lane"}, lane=lane)
    produce(redis, TOPIC, {"order": "baseline"})
    handled: dict[str, list[str]] = {"lane": [], "baseline": []}
    for _ in range(20):  # bounded: a few polls drain two messages
        lane_consumer.poll(lambda m: handled["lane"].append(_order(m)), block_ms=100)
        baseline_consumer.poll(lambda m: handled["baseline"].append(_order(m)), block_ms=100)
    assert handled == {"lane": ["in-lane"], "baseline": ["baseline"]}

    # b' stopped: the lane's keyed requests fall back to the baseline's b at once (a refused
    # connection, or a GET it dropped unanswered, is retried on the baseline), with no failed
    # request.
    with loop(entry, headers=keyed) as seen:
        wait_until(served(seen, pushed), 30, "keyed requests flowing")
        instance.stop(timeout=5)
        wait_until(served(seen, chain(lane)), 30, "fallback to b")
        # Deleted meanwhile: the route goes first, then what is left of b'.
        result = await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="dev"))
        count = seen[f"200 {chain(lane)}"]
        wait_until(lambda: seen[f"200 {chain(lane)}"] > count + 5, 30, "a → b → c after it")
    assert failures(seen) == {}, seen
    assert {r.kind for r in result.removed} >= {ResourceKind.DEPLOYMENT, ResourceKind.MESSAGES}
    # The workflow records and announces the deletion after answering: let it finish while
    # its worker runs, so no lane is left running in the session's Temporal.
    final = await asyncio.wait_for(handle.result(), 60)
    assert final.stage == LaneStage.DELETED and final.ledger == []
    assert lane_containers(fleet, lane) == []
    qa_b = env_key("chain-b", "test", CLUSTER)
    assert LaneRouter(HaproxyRouter(settings.state_dir)).table(qa_b).routes == {}
    groups = {g["name"] for g in redis.xinfo_groups(TOPIC)}
    assert group not in groups and "chain-b" in groups


def _order(message: LaneMessage) -> str:
    return message.fields["order"]
