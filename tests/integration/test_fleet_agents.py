"""A fleet with no single point (issue #28): three namespace hosts, each with its own agent
process, two orchestration worker processes, the catalogue on PostgreSQL.

One story under a bounded loopback request loop through the environment's HAProxy:

1. v1 released while n3 is cordoned: 6 replicas on n1 and n2, and that placement recorded in
   baseline 1;
2. n3 uncordoned, v2 released: 2 per host; the orchestration worker running the release is
   killed -9 mid-step and the other carries it to its end: 0 failed requests;
3. ``host drain n1``: its replicas move one at a time with 0 failed requests;
4. a rollback to baseline 1 puts the replicas back where baseline 1 had them (3 + 3 + 0,
   where a fresh spread would give 2 + 2 + 2);
5. a release whose host agent (n2's) is killed -9 mid-step: the documented outcome (the step
   fails within the heartbeat and schedule-to-start timeouts, the release compensates on the
   hosts that answer and names n2 as not undone; only the agent died, so n2's replicas of
   the old version keep serving), printed;
6. n2, away past SLIPWAY_HOST_LOST_SECONDS, is marked lost by a worker, and the durable
   host-drain workflow (waiting for that release to end) places its replicas again on the
   other hosts, the load balancer following, with 0 failed requests;
7. n3's agent killed while idle: n3 is lost too, and its replicas end up on n1.

Seconds and outcomes are printed; the bar is behaviour, not time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from catalogue.hosts import host_states, set_cordoned
from catalogue.releases import env_key
from catalogue.store import Store
from catalogue.tables import Baseline, Environment
from integrations.haproxy.router import HaproxyRouter
from schemas.hosts import DrainOutcome, host_drain_workflow_id
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.hosts import start_drain
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_release_docker import SAMPLE
from tests.support.chaos import AgentProcess, WorkerProcess
from tests.support.fleet import Fleet, fleet  # noqa: F401  (the session's test bed)
from tests.support.load import failures, request_loop
from tests.support.postgres import postgres_server
from tests.support.registry import RegistryServer
from workflows.release import ReleaseWorkflow

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
APP = "agentshop"  # its own: the other fleet tests release fleetshop on the same hosts
CLUSTER = "fleet"
REPLICAS = 6
LOST_SECONDS = 20
# Bounded waits: a takeover, a failed step plus its compensation, a lost host's moves.
TAKEOVER_BUDGET_SECONDS = 60.0
AGENT_LOSS_BUDGET_SECONDS = 180.0


@pytest.fixture
def fleet_settings(settings: Settings, fleet: Fleet,  # noqa: F811
                   registry_server: RegistryServer) -> Iterator[Settings]:
    """The fleet as the default cluster (builds stay on the main engine, the local
    cluster's), the catalogue on a PostgreSQL of the test's own."""
    fleet.forward(int(registry_server.host.rsplit(":", 1)[1]))
    with postgres_server() as url:
        yield settings.model_copy(update={
            "database_url": url, "clusters": {**settings.clusters, CLUSTER: fleet.cluster()},
            "default_cluster": CLUSTER, "host_lost_seconds": LOST_SECONDS})


@pytest.fixture
def cleanup(fleet: Fleet) -> Iterator[None]:  # noqa: F811
    yield
    for host in fleet.hosts:
        with contextlib.closing(host.client()) as client:
            for container in client.containers.list(all=True,
                                                    filters={"label": f"slipway.app={APP}"}):
                container.remove(force=True)


def placement(fleet: Fleet) -> dict[str, int]:  # noqa: F811
    """Running replicas of the app per host (every version)."""
    found = {}
    for host in fleet.hosts:
        with contextlib.closing(host.client()) as client:
            found[host.name] = len(client.containers.list(
                filters={"label": f"slipway.app={APP}"}))
    return found


def served_by(settings: Settings, fleet: Fleet) -> Counter[str]:  # noqa: F811
    """The load balancer's servers in rotation, by host."""
    names = {host.address: host.name for host in fleet.hosts}
    servers = HaproxyRouter(settings.state_dir, settings.haproxy_bin).servers(
        env_key(APP, "prod", CLUSTER))
    return Counter(names.get(server.address, server.address) for server in servers
                   if server.weight > 0 and not server.draining)


async def wait_registered(store: Store, names: list[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not all(state.last_seen for (cluster, host), state in host_states(store).items()
                  if cluster == CLUSTER and host in names) or len(
            [key for key in host_states(store) if key[0] == CLUSTER]) < len(names):
        assert time.monotonic() < deadline, "the agents never registered their hosts"
        await asyncio.sleep(0.2)


async def sticky_worker(handle: WorkflowHandle[Any, Any], workers: list[WorkerProcess]
                        ) -> WorkerProcess:
    """The orchestration worker that ran the release's last workflow task."""
    identity = ""
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            identity = event.workflow_task_started_event_attributes.identity
    pid = int(identity.split("@")[0])
    return next(worker for worker in workers if pid in worker.pids)


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  **fields: Any) -> WorkflowHandle[Any, Any]:
    request, summary = validate_release(store, ReleaseRequest(
        app=APP, env="prod", requested_by="ana", **fields))
    return (await start_release(temporal.client, settings, request, summary)).handle


async def inside_step(handle: WorkflowHandle[Any, Any], identity_pid: int | None,
                      kinds: set[str], seconds: float = 90) -> str:
    """Wait until a step past the first runs one of ``kinds`` (on the process ``identity_pid``
    when given); the activity type."""
    deadline = time.monotonic() + seconds
    while True:
        assert time.monotonic() < deadline, f"the release never ran {kinds} in a later step"
        status = await handle.query(ReleaseWorkflow.status)
        for pending in (await handle.describe()).raw_description.pending_activities:
            who = pending.last_worker_identity.split("@")[0]
            if (status.step >= 2 and pending.activity_type.name in kinds
                    and (identity_pid is None or who == str(identity_pid))):
                return pending.activity_type.name
        await asyncio.sleep(0.05)


async def drain_of(temporal: WorkflowEnvironment, host: str, since: float) -> DrainOutcome:
    """The outcome of the drain a worker starts for a lost ``host`` (bounded wait)."""
    handle = temporal.client.get_workflow_handle(host_drain_workflow_id(CLUSTER, host),
                                                result_type=DrainOutcome)
    while True:
        assert time.monotonic() - since < AGENT_LOSS_BUDGET_SECONDS, f"{host} never replaced"
        with contextlib.suppress(RPCError):
            outcome: DrainOutcome = await handle.result()
            return outcome
        await asyncio.sleep(1)


async def test_a_fleet_of_agents_and_two_workers_has_no_single_point(
    temporal: WorkflowEnvironment, fleet_settings: Settings, fleet: Fleet,  # noqa: F811
    cleanup: None, tmp_path: Path,
) -> None:
    settings = fleet_settings
    store = Store(settings.resolved_database_url())
    store.migrate()
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster=CLUSTER, replicas=REPLICAS, cpu="", memory="64Mi",
            ports=[8080], env_vars={}, runtime="docker", namespace="default",
            health_path="/healthz", settings=settings, actor="ana", strategy="gray",
            stable_seconds=3, approval="none")
    with store.session() as session:
        url = f"http://127.0.0.1:{session.exec(select(Environment)).one().lb_port}/"
    address = temporal.client.service_client.config.target_host
    lost = {"SLIPWAY_HOST_LOST_SECONDS": str(LOST_SECONDS)}
    workers = [WorkerProcess(settings, address, tmp_path / f"worker-{name}.log", lost,
                             agents=False) for name in ("a", "b")]
    agents = {host.name: AgentProcess(settings, address, tmp_path / f"agent-{host.name}.log",
                                      host.name, lost) for host in fleet.hosts}
    n1, n2, n3 = (host.name for host in fleet.hosts)
    try:
        for process in [*workers, *agents.values()]:
            process.start()
        await wait_registered(store, [n1, n2, n3])

        # 1. n3 cordoned: v1 on n1 and n2 only, recorded so in baseline 1.
        set_cordoned(store, CLUSTER, n3, True, "not yet racked", "ana")
        first = await follow(await release(temporal, settings, store, version_label="1.0.0"),
                             lambda _s: None)
        assert first.baseline_version == 1
        assert placement(fleet) == {n1: 3, n2: 3, n3: 0}
        with store.session() as session:
            recorded = session.exec(select(Baseline).where(Baseline.version == 1)).one()
        assert recorded.placement == {n1: 3, n2: 3}

        # 2. v2 spread over three hosts; the worker running it is killed mid-step.
        set_cordoned(store, CLUSTER, n3, False, "", "ana")
        with request_loop(url, max_seconds=150) as outcomes:
            handle = await release(temporal, settings, store, version_label="2.0.0")
            killed_in = await inside_step(handle, None, {"bring_up_on_host", "watch_health"})
            victim = await sticky_worker(handle, workers)
            victim.kill()
            killed = time.monotonic()
            second: ReleaseOutcome = await asyncio.wait_for(
                follow(handle, lambda _s: None), TAKEOVER_BUDGET_SECONDS + 60)
            finished = time.monotonic() - killed
            time.sleep(0.3)
        print(f"\nkill -9 of orchestration worker {victim.log.stem} inside {killed_in}: the "
              f"other finished the release {finished:.1f}s later; requests: {dict(outcomes)}")
        assert second.baseline_version == 2
        assert failures(outcomes) == {}
        assert placement(fleet) == {n1: 2, n2: 2, n3: 2}
        assert served_by(settings, fleet) == {n1: 2, n2: 2, n3: 2}
        workers.remove(victim)

        # 3. n1 drained under load: one replica at a time, nothing failed.
        with request_loop(url) as outcomes:
            drain = await start_drain(temporal.client, store, settings, n1, CLUSTER,
                                      "kernel upgrade", "ana")
            drained: DrainOutcome = await drain.result()
            time.sleep(0.3)
        print(f"drained {n1}: {drained.moved}; requests: {dict(outcomes)}")
        assert len(drained.moved) == 2 and failures(outcomes) == {}
        assert placement(fleet) == {n1: 0, n2: 3, n3: 3}
        set_cordoned(store, CLUSTER, n1, False, "", "ana")

        # 4. A rollback to baseline 1 puts its replicas back where baseline 1 had them.
        with request_loop(url) as outcomes:
            back = await follow(await release(temporal, settings, store, rollback_to=1,
                                              version_label="rollback"), lambda _s: None)
            time.sleep(0.3)
        print(f"rollback to baseline 1: placement {placement(fleet)}; requests: "
              f"{dict(outcomes)}")
        assert back.baseline_version == 3 and failures(outcomes) == {}
        assert placement(fleet) == {n1: 3, n2: 3, n3: 0}
        assert served_by(settings, fleet) == {n1: 3, n2: 3}

        # 5. n2's agent killed -9 mid-step: the step fails, the release compensates.
        with request_loop(url, max_seconds=AGENT_LOSS_BUDGET_SECONDS) as outcomes:
            handle = await release(temporal, settings, store, version_label="4.0.0")
            victim_agent = agents[n2]
            assert victim_agent.process is not None
            killed_in = await inside_step(handle, victim_agent.process.pid,
                                          {"bring_up_on_host", "watch_health"})
            victim_agent.kill()
            killed = time.monotonic()
            with pytest.raises(Exception) as ended:  # noqa: PT011 - the release's own failure
                await asyncio.wait_for(follow(handle, lambda _s: None),
                                       AGENT_LOSS_BUDGET_SECONDS)
            took = time.monotonic() - killed
            status = await handle.query(ReleaseWorkflow.status)
            time.sleep(0.3)
        print(f"kill -9 of {n2}'s agent inside {killed_in}: the release ended {took:.1f}s "
              f"later, {status.stage}: {ended.value}; serving {dict(served_by(settings, fleet))}"
              f"; requests: {dict(outcomes)}")
        assert status.stage in ("failed", "rolled_back")
        # Only the agent died: the old version serves at full strength, with n2's replicas
        # still in rotation unless the undo already started them again elsewhere.
        assert sum(served_by(settings, fleet).values()) == REPLICAS
        on_n2 = served_by(settings, fleet)[n2]

        # 6. n2 is lost (away past SLIPWAY_HOST_LOST_SECONDS): its durable drain, waiting for
        # the release to end, starts n2's replicas again on n1 and n3, the LB following.
        with request_loop(url, max_seconds=AGENT_LOSS_BUDGET_SECONDS) as outcomes:
            replaced = await drain_of(temporal, n2, killed)
            time.sleep(0.3)
        print(f"{n2} lost: {len(replaced.moved)} replica(s) placed again "
              f"{time.monotonic() - killed:.1f}s after its agent died (lost after "
              f"{LOST_SECONDS}s): serving {dict(served_by(settings, fleet))}; requests: "
              f"{dict(outcomes)}")
        assert len(replaced.moved) == on_n2 and failures(outcomes) == {}
        assert n2 not in served_by(settings, fleet)
        assert sum(served_by(settings, fleet).values()) == REPLICAS

        # 7. n3's agent killed while idle: lost too, its replicas end up on n1.
        on_n3 = served_by(settings, fleet)[n3]
        assert on_n3 > 0
        with request_loop(url, max_seconds=AGENT_LOSS_BUDGET_SECONDS) as outcomes:
            agents[n3].kill()
            killed = time.monotonic()
            replaced = await drain_of(temporal, n3, killed)
            took = time.monotonic() - killed
            time.sleep(0.3)
        print(f"{n3}'s agent killed while idle: lost and replaced {took:.1f}s later: moved "
              f"{replaced.moved}; serving {dict(served_by(settings, fleet))}; requests: "
              f"{dict(outcomes)}")
        assert len(replaced.moved) == on_n3 and failures(outcomes) == {}
        assert served_by(settings, fleet) == {n1: REPLICAS}
        for name in (n2, n3):
            state = host_states(store)[(CLUSTER, name)]
            assert state.lost and state.cordoned

        # Back, n3's agent registers again: the host stays cordoned until a person says.
        agents[n3].start()
        deadline = time.monotonic() + 30
        while host_states(store)[(CLUSTER, n3)].lost:
            assert time.monotonic() < deadline, f"{n3}'s agent never came back"
            await asyncio.sleep(0.2)
        assert host_states(store)[(CLUSTER, n3)].cordoned
    finally:
        for process in [*workers, *agents.values()]:
            process.stop()
        for process in [*workers, *agents.values()]:
            print(f"\n--- {process.log.name} (tail)\n"
                  + "\n".join(process.log.read_text(errors="replace").splitlines()[-6:]))
