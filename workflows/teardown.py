"""EnvTeardownWorkflow: remove one environment of an application, durably.

Id ``teardown:<app>:<type@cluster>``. Refused while the environment's release workflow runs.
Then, for every version the runtime still has: drain it out of the load balancer, stop it,
remove it; then remove the environment's entry point (its HAProxy frontend, or its Service on
Kubernetes) and mark the environment removed in the catalogue (audit ``env.removed``), its
releases, baselines and audit trail kept. Environments have no DNS records of their own (only
lanes do), so there are none to delete.

Every step is idempotent and finds what is already gone fine, so re-running the workflow
after a partial teardown finishes it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from activities.teardown import TeardownActivities
    from activities.traffic import TrafficActivities
    from schemas.models import DrainInput, EnsureFrontendInput, ListVersionsInput, VersionRef
    from schemas.teardown import (
        EnvRemovedInput,
        ReleaseIdleInput,
        TeardownOutcome,
        TeardownPlan,
        TeardownRequest,
    )
    from workflows import search, versioning
    from workflows.policies import (
        HEARTBEAT_TIMEOUT,
        HOST_SCHEDULE_TO_START,
        QUICK,
        RETRY,
        UNTIL_DONE,
    )
    from workflows.rollout.fleet import HostCalls


# Why teardown runs are pinned: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.TEARDOWN)
class EnvTeardownWorkflow:
    def __init__(self) -> None:
        self._stage = "queued"

    @workflow.query
    def stage(self) -> str:
        return self._stage

    def _at(self, stage: str, details: str) -> None:
        self._stage = stage
        workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
        workflow.set_current_details(details)

    @staticmethod
    async def _step(method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                    retry: RetryPolicy = UNTIL_DONE, task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any:
        """An effect of the teardown: retried until done (idempotent; a dockerd restart only
        delays it), heartbeating, so a lost worker is noticed; permanent errors end it (and
        an agent that does not pick it up within ``schedule_to_start``)."""
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=timeout, heartbeat_timeout=HEARTBEAT_TIMEOUT,
            retry_policy=retry, summary=summary, task_queue=task_queue,
            schedule_to_start_timeout=schedule_to_start)

    async def act(self, method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                  heartbeat: bool = True, task_queue: str | None = None,
                  schedule_to_start: timedelta | None = None) -> Any:
        """:meth:`_step` as HostCalls runs it on a host's agent."""
        return await self._step(method, arg, summary, timeout, task_queue=task_queue,
                                schedule_to_start=schedule_to_start)

    async def watch(self, method: Any, arg: Any, summary: str, timeout: timedelta,
                    task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any:
        """A watching activity to its end (a teardown watches nothing; HostCalls' shape)."""
        return await self.act(method, arg, summary, timeout, task_queue=task_queue,
                              schedule_to_start=schedule_to_start)

    @workflow.run
    async def run(self, request: TeardownRequest) -> TeardownOutcome:
        self._at("checking", f"removing {request.app} {request.env}: checking")
        plan: TeardownPlan = await workflow.execute_activity_method(
            TeardownActivities.load_teardown, request, start_to_close_timeout=QUICK,
            retry_policy=RETRY, summary=f"load {request.app} {request.env}")
        await workflow.execute_activity_method(
            TeardownActivities.check_release_idle, ReleaseIdleInput(app=plan.app, env=plan.env),
            start_to_close_timeout=QUICK, retry_policy=RETRY,
            summary=f"no release of {plan.app} on {plan.env} runs")
        # Docker hosts with agents: each host's part on its agent, the LB's on the LB host's.
        hosts = HostCalls(self, plan) if plan.hosts else None
        lb = hosts.lb_queue if hosts else None
        on_lb = HOST_SCHEDULE_TO_START if hosts else None
        versions: list[int] = await hosts.versions() if hosts else await self._step(
            RuntimeActivities.list_versions,
            ListVersionsInput(app=plan.app, env_key=plan.env_key, cluster=plan.cluster,
                              namespace=plan.namespace), "list versions")
        shown = ", ".join(f"v{v}" for v in versions) or "no version"
        self._at("draining", f"draining {shown}")
        for version in versions:
            await self._step(
                TrafficActivities.drain,
                DrainInput(env_key=plan.env_key, version=version,
                           timeout_seconds=plan.drain_timeout_seconds, cluster=plan.cluster,
                           namespace=plan.namespace),
                f"drain v{version}", timedelta(seconds=plan.drain_timeout_seconds + 60),
                task_queue=lb, schedule_to_start=on_lb)
        self._at("stopping", f"stopping {shown}")
        for version in versions:
            if hosts:
                await hosts.each(RuntimeActivities.stop_version, self._ref(plan, version),
                                 f"stop v{version}", timedelta(minutes=5))
            else:
                await self._step(RuntimeActivities.stop_version, self._ref(plan, version),
                                 f"stop v{version}", timedelta(minutes=5))
        self._at("removing", f"removing {shown}")
        for version in versions:
            if hosts:
                await hosts.each(RuntimeActivities.remove_version, self._ref(plan, version),
                                 f"remove v{version}", timedelta(minutes=5))
            else:
                await self._step(RuntimeActivities.remove_version, self._ref(plan, version),
                                 f"remove v{version}", timedelta(minutes=5))
        self._at("frontend", f"removing the entry point on port {plan.lb_port}")
        await self._step(
            TrafficActivities.remove_frontend,
            EnsureFrontendInput(env_key=plan.env_key, lb_port=plan.lb_port,
                                health_path=plan.health_path, cluster=plan.cluster,
                                app=plan.app, namespace=plan.namespace, ports=plan.ports),
            f"remove the entry point on port {plan.lb_port}", task_queue=lb,
            schedule_to_start=on_lb)
        await self._step(
            TeardownActivities.mark_env_removed,
            EnvRemovedInput(app=plan.app, env=plan.env, requested_by=request.requested_by,
                            reason=request.reason, workflow_id=workflow.info().workflow_id,
                            versions=versions),
            f"mark {plan.env} removed")
        self._at("removed", f"{plan.app} {plan.env} removed ({shown} torn down)")
        return TeardownOutcome(app=plan.app, env=plan.env, versions=versions,
                               already_removed=plan.already_removed)

    @staticmethod
    def _ref(plan: TeardownPlan, version: int) -> VersionRef:
        return VersionRef(app=plan.app, env_key=plan.env_key, cluster=plan.cluster,
                          version=version, namespace=plan.namespace)
