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
    from activities.hosts import HostActivities
    from activities.runtime import RuntimeActivities
    from schemas.hosts import DrainHostRequest, DrainOutcome, DrainPlan, ReplicaMove
    from schemas.models import Instance, WaitReadyInput
    from workflows.policies import HEARTBEAT_TIMEOUT, QUICK, RETRY, UNTIL_DONE


@workflow.defn
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

    @workflow.run
    async def run(self, request: DrainHostRequest) -> DrainOutcome:
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
