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

from schemas.hosts import DrainHostRequest, DrainOutcome, DrainPlan, ReplicaMove
from schemas.models import Instance, StartVersionInput, VersionRef, WaitReadyInput
from workflows.host_drain import HostDrainWorkflow

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

        return [plan_host_drain, take_out, start_version, wait_ready, put_back]


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
