"""HostDrainWorkflow: move every replica off a Docker host, one at a time, without a failed
request.

Id ``host-drain:<cluster>:<host>``; the host is cordoned first (``slipway host drain``), so
nothing new lands there. For each replica of an environment on the host: its load-balancer
server is drained (requests in flight finish), taken out, the replica removed; the version
is started again at its replica count, which places the missing replica on another host;
once healthy it goes back into rotation at the weight it had. One replica at a time, so an
environment runs one replica short at most for the move's duration. Replicas of a lane, and
of an environment whose release is in flight, stay; the outcome says why.

Every step is idempotent: a worker killed mid-move repeats the move from where it was.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.agent import HostAgentActivities
    from activities.hosts import HostActivities
    from activities.runtime import RuntimeActivities
    from schemas.hosts import (
        AgentHosts,
        DrainHostRequest,
        DrainOutcome,
        DrainPlan,
        HeldReplica,
        ReplicaMove,
        ServersAtInput,
    )
    from schemas.models import Instance, WaitReadyInput
    from workflows import versioning
    from workflows.policies import (
        HEARTBEAT_TIMEOUT,
        HOST_SCHEDULE_TO_START,
        QUICK,
        RETRY,
        UNTIL_DONE,
        host_queue,
    )
    from workflows.rollout.fleet import HostCalls

# Drains ask which hosts have agents first (before: every engine reached from the workers).
AGENTS_PATCH = "host-drain-through-agents"
# A lost host's drain comes back this often for environments that were mid-release, for at
# most this many rounds (an hour): bounded, and visible in its current details meanwhile.
LOST_RETRY_INTERVAL = timedelta(seconds=15)
LOST_RETRY_ROUNDS = 240


# Why host drain runs are pinned: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.HOST_DRAIN)
class HostDrainWorkflow:
    def __init__(self) -> None:
        self._outcome: DrainOutcome | None = None

    @workflow.query
    def progress(self) -> DrainOutcome | None:
        return self._outcome

    @staticmethod
    async def _step(method: Any, *args: Any, summary: str, timeout: timedelta = QUICK,
                    retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity_method(
            method, args=list(args), start_to_close_timeout=timeout,
            heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=retry, summary=summary)

    async def _move(self, move: ReplicaMove) -> str:
        name = f"v{move.spec.version.version}-{move.index} of {move.env_key}"
        # Out of rotation and off the host: finished whatever happens next (idempotent).
        weight: int = await self._step(
            HostActivities.take_out, move, summary=f"take {name} off {move.host}",
            timeout=timedelta(seconds=move.drain_timeout_seconds) + QUICK, retry=UNTIL_DONE)
        await self._step(RuntimeActivities.start_version, move.spec,
                         summary=f"start {name} again", timeout=timedelta(minutes=10))
        instances: list[Instance] = await self._step(
            RuntimeActivities.wait_ready,
            WaitReadyInput(version=move.spec.version, replicas=move.spec.replicas,
                           port=move.port, health_path=move.spec.health_path,
                           deadline_seconds=move.deadline_seconds),
            summary=f"wait for {name}",
            timeout=timedelta(seconds=move.deadline_seconds) + QUICK)
        where: str = await self._step(HostActivities.put_back, move, instances, weight,
                                      summary=f"put {name} back", retry=UNTIL_DONE)
        return where

    async def act(self, method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                  heartbeat: bool = True, task_queue: str | None = None,
                  schedule_to_start: timedelta | None = None) -> Any:
        """An activity (on ``task_queue``: a host's agent), retried as the drain's steps are."""
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=timeout, summary=summary,
            heartbeat_timeout=HEARTBEAT_TIMEOUT if heartbeat else None, retry_policy=RETRY,
            task_queue=task_queue, schedule_to_start_timeout=schedule_to_start)

    async def watch(self, method: Any, arg: Any, summary: str, timeout: timedelta,
                    task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any:
        """A watching activity to its end (nobody steers a drain)."""
        return await self.act(method, arg, summary, timeout, task_queue=task_queue,
                              schedule_to_start=schedule_to_start)

    async def _on(self, host: str, method: Any, *args: Any, summary: str,
                  timeout: timedelta = QUICK, retry: RetryPolicy = RETRY) -> Any:
        """An activity on ``host``'s agent."""
        return await workflow.execute_activity_method(
            method, args=list(args), start_to_close_timeout=timeout, summary=summary,
            heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=retry,
            task_queue=host_queue(workflow.info().task_queue, host),
            schedule_to_start_timeout=HOST_SCHEDULE_TO_START)

    async def _move_on_agents(self, hosts: AgentHosts, move: ReplicaMove, lost: bool) -> str:
        """One replica moved through the agents: out of rotation (drained unless its host
        is lost), off its host (unless lost: nothing answers there), started again on the
        other hosts, back in rotation at its weight."""
        name = f"v{move.spec.version.version}-{move.index} of {move.env_key}"
        weight: int = await self._on(
            hosts.lb_host, HostActivities.take_server_out, move,
            summary=f"take {name} out of rotation",
            timeout=timedelta(seconds=move.drain_timeout_seconds) + QUICK, retry=UNTIL_DONE)
        if not lost:
            await self._on(move.host, HostAgentActivities.remove_replica, move,
                           summary=f"remove {name} from {move.host}", retry=UNTIL_DONE)
        others = hosts.model_copy(update={
            "app": move.spec.version.app, "env_key": move.env_key,
            "namespace": move.spec.version.namespace,
            "hosts": [host for host in hosts.hosts if host.name != move.host]})
        instances = await HostCalls(self, others).bring_up(move.spec, move.deadline_seconds)
        where: str = await self._on(hosts.lb_host, HostActivities.put_back, move, instances,
                                    weight, summary=f"put {name} back", retry=UNTIL_DONE)
        return where

    async def _plan_on_agents(self, request: DrainHostRequest, hosts: AgentHosts) -> DrainPlan:
        """What to move: the host's replicas as its agent finds them, or, for a lost host,
        the servers the load balancer routes to its address."""
        if request.lost:
            address = await self._step(HostActivities.host_address, request,
                                       summary=f"address of {request.host}")
            held: list[HeldReplica] = await self._on(
                hosts.lb_host, HostActivities.servers_at,
                ServersAtInput(cluster=request.cluster, address=address),
                summary=f"servers at {request.host} ({address})")
        else:
            held = await self._on(request.host, HostAgentActivities.replicas_here,
                                  request.cluster, summary=f"what runs on {request.host}")
        plan: DrainPlan = await self._step(HostActivities.plan_moves, request, held,
                                           summary="the moves")
        return plan

    @workflow.run
    async def run(self, request: DrainHostRequest) -> DrainOutcome:
        hosts = AgentHosts()
        if workflow.patched(AGENTS_PATCH):  # drains started before agents replay without
            hosts = await self._step(HostActivities.agent_hosts, request.cluster,
                                     summary=f"agents of {request.cluster}")
        if hosts.hosts:
            return await self._run_on_agents(request, hosts)
        plan: DrainPlan = await self._step(HostActivities.plan_host_drain, request,
                                           summary=f"what runs on {request.host}")
        self._outcome = DrainOutcome(cluster=request.cluster, host=request.host,
                                     skipped=plan.skipped)
        for number, move in enumerate(plan.moves, start=1):
            workflow.set_current_details(
                f"draining {request.host}: replica {number} of {len(plan.moves)} "
                f"(v{move.spec.version.version}-{move.index} of {move.env_key})")
            self._outcome.moved.append(await self._move(move))
        workflow.set_current_details(
            f"{request.host} drained: {len(self._outcome.moved)} replica(s) moved"
            + (f", {len(plan.skipped)} left" if plan.skipped else ""))
        return self._outcome

    async def _run_on_agents(self, request: DrainHostRequest,
                             hosts: AgentHosts) -> DrainOutcome:
        """Every replica moved through the agents. A lost host's replicas whose environment
        is mid-release stay in rotation (its containers may well serve on: only the agent is
        gone) until that release ends: the drain looks again every LOST_RETRY_INTERVAL, at
        most LOST_RETRY_ROUNDS times."""
        self._outcome = DrainOutcome(cluster=request.cluster, host=request.host)
        verb = "replacing lost" if request.lost else "draining"
        for round_ in range(LOST_RETRY_ROUNDS + 1):
            if round_:
                await workflow.sleep(LOST_RETRY_INTERVAL)
                hosts = await self._step(HostActivities.agent_hosts, request.cluster,
                                         summary=f"agents of {request.cluster}")
            plan = await self._plan_on_agents(request, hosts)
            self._outcome.skipped = plan.skipped
            if plan.moves and not any(host.name != request.host and not host.cordoned
                                      for host in hosts.hosts):
                # Nowhere to start them again: nothing is taken out of rotation.
                self._outcome.skipped.append(
                    f"{len(plan.moves)} replica(s) stay: no other host of {request.cluster} "
                    "whose agent answers takes new replicas (uncordon or add one)")
                break
            for number, move in enumerate(plan.moves, start=1):
                workflow.set_current_details(
                    f"{verb} {request.host}: replica {number} of {len(plan.moves)} "
                    f"(v{move.spec.version.version}-{move.index} of {move.env_key})")
                self._outcome.moved.append(await self._move_on_agents(hosts, move,
                                                                      request.lost))
            if not (request.lost and plan.in_flight):
                break
            workflow.set_current_details(
                f"{verb} {request.host}: waiting for the releases in flight of "
                f"{', '.join(plan.in_flight)} to end (looking again in "
                f"{LOST_RETRY_INTERVAL.total_seconds():.0f}s)")
        workflow.set_current_details(
            f"{request.host} {'replaced' if request.lost else 'drained'}: "
            f"{len(self._outcome.moved)} replica(s) moved"
            + (f", {len(self._outcome.skipped)} left" if self._outcome.skipped else ""))
        return self._outcome
