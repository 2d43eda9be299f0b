"""HostDrainWorkflow on the time-skipping server: fake activities record the order. One
replica at a time: out of rotation and off the host, started again, healthy, back in at the
weight it had; what stays is reported; a move whose put-back fails is retried, not lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from schemas.hosts import (
    AgentHosts,
    DrainHostRequest,
    DrainOutcome,
    DrainPlan,
    HeldReplica,
    HostBringUpInput,
    HostInventory,
    HostInventoryInput,
    ReplicaMove,
    ServersAtInput,
)
from schemas.models import Instance, PlanHost, StartVersionInput, VersionRef, WaitReadyInput
from workflows.host_drain import HostDrainWorkflow
from workflows.policies import host_queue

KEY = "shop-prod-fleet"


def move(index: int) -> ReplicaMove:
    spec = StartVersionInput(version=VersionRef(app="shop", env_key=KEY, cluster="fleet",
                                                version=3),
                             image="registry/shop@sha256:1", replicas=3, ports=[8080])
    return ReplicaMove(cluster="fleet", host="h1", env_key=KEY, index=index, spec=spec,
                       port=8080, drain_timeout_seconds=5, deadline_seconds=60)


class World:
    def __init__(self, moves: list[ReplicaMove], skipped: list[str],
                 put_back_failures: int = 0) -> None:
        self.plan = DrainPlan(moves=moves, skipped=skipped)
        self.calls: list[str] = []
        self.put_back_failures = put_back_failures

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="agent_hosts")
        async def agent_hosts(cluster: str) -> AgentHosts:
            return AgentHosts(cluster=cluster)  # no agent registered: the workers' path

        @activity.defn(name="plan_host_drain")
        async def plan_host_drain(data: DrainHostRequest) -> DrainPlan:
            self.calls.append(f"plan {data.host}")
            return self.plan

        @activity.defn(name="take_out")
        async def take_out(data: ReplicaMove) -> int:
            self.calls.append(f"out v3-{data.index}")
            return 40  # a weight other than the default: it must come back as it was

        @activity.defn(name="start_version")
        async def start_version(data: StartVersionInput) -> None:
            self.calls.append(f"start v{data.version.version}×{data.replicas}")

        @activity.defn(name="wait_ready")
        async def wait_ready(data: WaitReadyInput) -> list[Instance]:
            self.calls.append("ready")
            return [Instance(name=f"v3-{i}", version=3, address="10.0.0.12", port=30000 + i)
                    for i in range(data.replicas)]

        @activity.defn(name="put_back")
        async def put_back(data: ReplicaMove, instances: list[Instance], weight: int) -> str:
            if self.put_back_failures:
                self.put_back_failures -= 1
                raise RuntimeError("HAProxy socket busy")
            self.calls.append(f"in v3-{data.index} at {weight}")
            return f"v3-{data.index}: h1 → 10.0.0.12"

        return [agent_hosts, plan_host_drain, take_out, start_version, wait_ready, put_back]


async def drain(env: WorkflowEnvironment, world: World) -> DrainOutcome:
    queue = f"drain-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[HostDrainWorkflow],
                      activities=world.activities()):
        return await env.client.execute_workflow(
            HostDrainWorkflow.run, DrainHostRequest(cluster="fleet", host="h1",
                                                    requested_by="ana"),
            id=f"host-drain:fleet:h1-{uuid.uuid4().hex[:6]}", task_queue=queue)


async def test_one_replica_at_a_time_out_started_healthy_back_at_its_weight(
        env: WorkflowEnvironment) -> None:
    world = World([move(0), move(2)], skipped=["lane-x: a lane's replica"])
    outcome = await drain(env, world)
    assert world.calls == ["plan h1",
                           "out v3-0", "start v3×3", "ready", "in v3-0 at 40",
                           "out v3-2", "start v3×3", "ready", "in v3-2 at 40"]
    assert outcome.moved == ["v3-0: h1 → 10.0.0.12", "v3-2: h1 → 10.0.0.12"]
    assert outcome.skipped == ["lane-x: a lane's replica"]


async def test_a_failing_put_back_is_retried_until_the_replica_is_back(
        env: WorkflowEnvironment) -> None:
    world = World([move(1)], skipped=[], put_back_failures=2)
    outcome = await drain(env, world)
    assert world.calls[-1] == "in v3-1 at 40" and outcome.moved == ["v3-1: h1 → 10.0.0.12"]


async def test_nothing_to_move_is_a_drained_host(env: WorkflowEnvironment) -> None:
    world = World([], skipped=[])
    outcome = await drain(env, world)
    assert world.calls == ["plan h1"] and outcome.moved == [] and outcome.host == "h1"


class Agents:
    """A fleet of two hosts with agents: h1 (drained or lost) and h2 (the LB host)."""

    def __init__(self, rounds: list[DrainPlan]) -> None:
        self.rounds = rounds
        self.calls: list[str] = []

    def main(self) -> list[Callable[..., Any]]:
        @activity.defn(name="agent_hosts")
        async def agent_hosts(cluster: str) -> AgentHosts:
            return AgentHosts(cluster=cluster, lb_host="h2", hosts=[
                PlanHost(name="h1", cordoned=True), PlanHost(name="h2")])

        @activity.defn(name="host_address")
        async def host_address(data: DrainHostRequest) -> str:
            return "10.0.0.11"

        @activity.defn(name="plan_moves")
        async def plan_moves(data: DrainHostRequest, held: list[HeldReplica]) -> DrainPlan:
            self.calls.append(f"plan {[f'v{r.version}-{r.index}' for r in held]}")
            return self.rounds.pop(0)

        return [agent_hosts, host_address, plan_moves]

    def h1(self) -> list[Callable[..., Any]]:
        @activity.defn(name="replicas_here")
        async def replicas_here(cluster: str) -> list[HeldReplica]:
            return [HeldReplica(env_key=KEY, version=3, index=0)]

        @activity.defn(name="remove_replica")
        async def remove_replica(data: ReplicaMove) -> None:
            self.calls.append(f"h1: remove v3-{data.index}")

        return [replicas_here, remove_replica]

    def h2(self) -> list[Callable[..., Any]]:
        @activity.defn(name="servers_at")
        async def servers_at(data: ServersAtInput) -> list[HeldReplica]:
            return [HeldReplica(env_key=KEY, version=3, index=0)]

        @activity.defn(name="take_server_out")
        async def take_server_out(data: ReplicaMove) -> int:
            self.calls.append(f"lb: out v3-{data.index} (drain {data.drain_timeout_seconds:g}s)")
            return 40

        @activity.defn(name="host_inventory")
        async def host_inventory(data: HostInventoryInput) -> HostInventory:
            return HostInventory(host="h2", kept=[1, 2], has_version=True, load=2)

        @activity.defn(name="bring_up_on_host")
        async def bring_up_on_host(data: HostBringUpInput) -> list[Instance]:
            self.calls.append(f"h2: v3 {data.indexes}")
            return [Instance(name=f"v3-{i}", version=3, address="10.0.0.12", port=30000 + i)
                    for i in data.indexes]

        @activity.defn(name="put_back")
        async def put_back(data: ReplicaMove, instances: list[Instance], weight: int) -> str:
            self.calls.append(f"lb: in v3-{data.index} at {weight}")
            return f"v3-{data.index}: h1 → 10.0.0.12"

        return [servers_at, take_server_out, host_inventory, bring_up_on_host, put_back]


async def drain_on_agents(env: WorkflowEnvironment, agents: Agents,
                          lost: bool = False) -> DrainOutcome:
    queue = f"drain-{uuid.uuid4()}"
    async with (Worker(env.client, task_queue=queue, workflows=[HostDrainWorkflow],
                       activities=agents.main()),
                Worker(env.client, task_queue=host_queue(queue, "h1"), activities=agents.h1()),
                Worker(env.client, task_queue=host_queue(queue, "h2"), activities=agents.h2())):
        return await env.client.execute_workflow(
            HostDrainWorkflow.run, DrainHostRequest(cluster="fleet", host="h1",
                                                    requested_by="ana", lost=lost),
            id=f"host-drain:fleet:h1-{uuid.uuid4().hex[:6]}", task_queue=queue)


async def test_on_agents_a_replica_leaves_through_the_lb_host_and_its_own(
        env: WorkflowEnvironment) -> None:
    agents = Agents([DrainPlan(moves=[move(0)])])
    outcome = await drain_on_agents(env, agents)
    # Out of rotation (drained), off h1 by h1's agent, started on h2 beside what runs
    # there, back in at its weight.
    assert agents.calls == ["plan ['v3-0']", "lb: out v3-0 (drain 5s)", "h1: remove v3-0",
                            "h2: v3 [0, 1, 2]", "lb: in v3-0 at 40"]
    assert outcome.moved == ["v3-0: h1 → 10.0.0.12"]


async def test_a_lost_hosts_replicas_wait_for_a_release_in_flight_then_move(
        env: WorkflowEnvironment) -> None:
    lost = move(0).model_copy(update={"drain_timeout_seconds": 0})
    agents = Agents([DrainPlan(skipped=[f"v3-0 of {KEY}: a release is in flight"],
                               in_flight=[KEY]),
                     DrainPlan(moves=[lost])])
    outcome = await drain_on_agents(env, agents, lost=True)
    # Read from the load balancer (h1's agent is gone: nothing is asked of it), looked at
    # again once the release ended (a durable timer), moved without a drain.
    assert agents.calls == ["plan ['v3-0']", "plan ['v3-0']", "lb: out v3-0 (drain 0s)",
                            "h2: v3 [0, 1, 2]", "lb: in v3-0 at 40"]
    assert outcome.moved == ["v3-0: h1 → 10.0.0.12"] and outcome.skipped == []


async def test_with_no_other_host_to_take_them_nothing_leaves_rotation(
        env: WorkflowEnvironment) -> None:
    agents = Agents([DrainPlan(moves=[move(0)])])
    lonely = agents.main()

    @activity.defn(name="agent_hosts")
    async def agent_hosts(cluster: str) -> AgentHosts:
        return AgentHosts(cluster=cluster, lb_host="h1", hosts=[PlanHost(name="h1")])

    queue = f"drain-{uuid.uuid4()}"
    async with (Worker(env.client, task_queue=queue, workflows=[HostDrainWorkflow],
                       activities=[agent_hosts, *lonely[1:]]),
                Worker(env.client, task_queue=host_queue(queue, "h1"),
                       activities=[*agents.h1(), *agents.h2()])):
        outcome = await env.client.execute_workflow(
            HostDrainWorkflow.run, DrainHostRequest(cluster="fleet", host="h1",
                                                    requested_by="ana"),
            id=f"host-drain:fleet:h1-{uuid.uuid4().hex[:6]}", task_queue=queue)
    assert agents.calls == ["plan ['v3-0']"]  # nothing taken out, nothing removed
    assert outcome.moved == [] and "no other host of fleet" in outcome.skipped[-1]
