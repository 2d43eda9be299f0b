"""The building blocks every rollout strategy shares: start, wait healthy, rotate, drain, undo.

``Rollout`` runs inside ReleaseWorkflow and only orchestrates: every effect is an activity
started through the workflow, which also owns the undo stack and the person-facing controls
(pause, promote, abort). Before each change to the environment the matching undo is pushed,
so a failure at any point can put the recorded baseline back.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from activities.traffic import TrafficActivities
    from schemas.models import (
        DrainInput,
        EnsureFrontendInput,
        ImageSpec,
        ListVersionsInput,
        ReleasePlan,
        ShiftInput,
        StartVersionInput,
        TrafficInput,
        VersionRef,
        VersionStatus,
        WaitReadyInput,
        WatchHealthInput,
    )
    from workflows.policies import HOST_SCHEDULE_TO_START
    from workflows.rollout.fleet import HostCalls
    from workflows.rollout.host import RolloutHost

def cause_of(error: BaseException) -> str:
    """The message of the innermost cause of an activity's or a child workflow's failure."""
    while isinstance(error, ActivityError | ChildWorkflowError) and error.cause is not None:
        error = error.cause
    return getattr(error, "message", None) or str(error) or type(error).__name__


class Rollout(ABC):
    """Base of the strategies: one release plan, its target image and the old version."""

    def __init__(self, wf: RolloutHost, plan: ReleasePlan, target: ImageSpec) -> None:
        self.wf = wf
        self.plan = plan
        self.target = target
        self.old_version = 0
        self.old_count = 0
        # Replicas (new, old) the status query shows last: the undo steps update it, so
        # `status` after a rollback shows what runs, not what ran before the undo.
        self.shown: tuple[int, int] | None = None
        # Docker hosts with agents: containers through each host's agent, the load balancer
        # through the LB host's (None: every activity on the workflow's own queue).
        self.hosts = HostCalls(wf, plan) if plan.hosts else None
        # Where load-balancer activities go: the LB host's agent, which must pick them up in
        # time like any host's (nothing: the workflow's own queue).
        self.lb: dict[str, Any] = ({"task_queue": self.hosts.lb_queue,
                                    "schedule_to_start": HOST_SCHEDULE_TO_START}
                                   if self.hosts else {})

    def ref(self, version: int) -> VersionRef:
        return VersionRef(app=self.plan.app, env_key=self.plan.env_key,
                          cluster=self.plan.cluster, version=version,
                          namespace=self.plan.namespace)

    async def run(self) -> None:
        await self.carry_out(await self.survey())

    @abstractmethod
    async def carry_out(self, leftovers: list[int]) -> None:
        """Replace the old version by the new one; ``leftovers`` are debris of earlier runs."""

    async def survey(self) -> list[int]:
        """Ensure the frontend; find the old version and any leftover versions."""
        plan = self.plan
        frontend = self.wf.act(TrafficActivities.ensure_frontend,
                               EnsureFrontendInput(env_key=plan.env_key, lb_port=plan.lb_port,
                                                   health_path=plan.health_path,
                                                   cluster=plan.cluster, app=plan.app,
                                                   namespace=plan.namespace, ports=plan.ports),
                               f"load balancer on port {plan.lb_port}", **self.lb)
        versions: list[int]
        if self.hosts is not None:
            # The load balancer's host and the others at once, each asked also what runs of
            # the new version (where its first replicas go).
            _, versions, _ = await asyncio.gather(
                frontend, self.hosts.versions(),
                self.hosts.inventory(self.spec(plan.to_version, self.target, plan.replicas)))
        else:
            await frontend
            versions = await self.wf.act(
                RuntimeActivities.list_versions,
                ListVersionsInput(app=plan.app, env_key=plan.env_key, cluster=plan.cluster,
                                  namespace=plan.namespace),
                "list running versions",
            )
        if plan.current is not None and plan.from_version in versions:
            self.old_version, self.old_count = plan.from_version, plan.current_replicas
            self.show(0, self.old_count)  # what serves before anything changes
        return [v for v in versions if v not in (self.old_version, plan.to_version)]

    # -- building blocks --------------------------------------------------------------------

    def push_restore(self) -> None:
        """Push, once, the undo that brings the baseline's version back to full strength."""
        plan = self.plan
        current = plan.current
        if current is None or not plan.from_version or self.wf.has_undo("restore"):
            return

        async def restore() -> None:
            await self.bring_up(plan.from_version, current, plan.current_replicas,
                                prefer=plan.current_placement)
            self.old_version, self.old_count = plan.from_version, plan.current_replicas
            self.show(self.shown[0] if self.shown else 0, plan.current_replicas)

        self.wf.push_undo(f"restore v{plan.from_version}", restore)

    def spec(self, version: int, image: ImageSpec, replicas: int) -> StartVersionInput:
        plan = self.plan
        return StartVersionInput(version=self.ref(version), image=image.run_ref,
                                 replicas=replicas, ports=plan.ports, env_vars=plan.env_vars,
                                 env_id=plan.env_id, cpu=plan.cpu, memory=plan.memory,
                                 health_path=plan.health_path)

    async def start(self, version: int, image: ImageSpec, replicas: int) -> None:
        if self.hosts is not None:
            await self.hosts.bring_up(self.spec(version, image, replicas),
                                      self.plan.progress_deadline_seconds)
            return
        await self.wf.act(RuntimeActivities.start_version, self.spec(version, image, replicas),
                          f"run {replicas}× v{version}", timeout=timedelta(minutes=10))

    async def bring_up(self, version: int, image: ImageSpec, replicas: int,
                       prefer: dict[str, int] | None = None,
                       then_drain: DrainInput | None = None) -> None:
        """Start replicas of a version, wait until they are healthy, put them in rotation
        (on hosts with agents: where ``prefer`` had them first, a baseline's placement; and
        with ``then_drain``, the old version drained in the same load-balancer activity)."""
        plan = self.plan
        if prefer is None and version == plan.to_version:
            prefer = plan.target_placement  # a rollback: where its baseline ran
        if self.hosts is not None:
            with self.wf.looking(version, "bring_up_on_host", replicas):
                instances = await self.hosts.bring_up(self.spec(version, image, replicas),
                                                      plan.progress_deadline_seconds,
                                                      prefer=prefer)
        else:
            await self.start(version, image, replicas)
            with self.wf.looking(version, "wait_ready", replicas):
                instances = await self.wf.act(
                    RuntimeActivities.wait_ready,
                    WaitReadyInput(version=self.ref(version), replicas=replicas,
                                   port=plan.ports[0], health_path=plan.health_path,
                                   deadline_seconds=plan.progress_deadline_seconds,
                                   report=True),
                    f"wait until {replicas}× v{version} are healthy",
                    timeout=timedelta(seconds=plan.progress_deadline_seconds + 60),
                    heartbeat=True,
                )
        rotation = TrafficInput(env_key=plan.env_key, instances=instances,
                                cluster=plan.cluster, namespace=plan.namespace)
        if then_drain is not None:
            await self.wf.act(TrafficActivities.shift, ShiftInput(add=rotation, drain=then_drain),
                              f"put v{version} in rotation, drain v{then_drain.version} down "
                              f"to {then_drain.keep}", **self.lb,
                              timeout=timedelta(seconds=plan.drain_timeout_seconds + 60))
            return
        await self.wf.act(TrafficActivities.add_to_lb, rotation, f"put v{version} in rotation",
                          **self.lb)

    def drain_input(self, version: int, keep: int) -> DrainInput:
        plan = self.plan
        return DrainInput(env_key=plan.env_key, version=version, keep=keep,
                          timeout_seconds=plan.drain_timeout_seconds, cluster=plan.cluster,
                          namespace=plan.namespace)

    async def drain(self, version: int, keep: int) -> None:
        plan = self.plan
        await self.wf.act(TrafficActivities.drain, self.drain_input(version, keep),
                          f"drain v{version}" + (f" down to {keep}" if keep else ""),
                          timeout=timedelta(seconds=plan.drain_timeout_seconds + 60),
                          **self.lb)

    async def remove(self, version: int) -> None:
        if self.hosts is not None:
            await self.hosts.each(RuntimeActivities.remove_version, self.ref(version),
                                  f"remove v{version}")
            return
        await self.wf.act(RuntimeActivities.remove_version, self.ref(version),
                          f"remove v{version}")

    async def stop(self, version: int) -> None:
        """Stop the version's containers, keeping them (a recreate's old version)."""
        if self.hosts is not None:
            await self.hosts.each(RuntimeActivities.stop_version, self.ref(version),
                                  f"stop v{version}", timeout=timedelta(minutes=5))
            return
        await self.wf.act(RuntimeActivities.stop_version, self.ref(version),
                          f"stop v{version}", timeout=timedelta(minutes=5))

    async def watch_health(self, data: WatchHealthInput, summary: str,
                           timeout: timedelta) -> list[str] | None:
        """One stable-wait window (:meth:`RolloutHost.watch`), on every host holding the
        version when the hosts have agents."""
        if self.hosts is not None:
            return await self.hosts.watch(data, summary, timeout)
        result: list[str] | None = await self.wf.watch(RuntimeActivities.watch_health, data,
                                                       summary, timeout)
        return result

    def placement(self) -> dict[str, int]:
        """Replicas per host of the new version (empty without agents): the baseline's."""
        if self.hosts is None:
            return {}
        return self.hosts.placed.get(self.plan.to_version, {})

    async def tear_down(self) -> None:
        """Undo of starting the new version: out of rotation at once, containers removed."""
        version = self.plan.to_version
        await self.wf.act(TrafficActivities.remove_from_lb,
                          DrainInput(env_key=self.plan.env_key, version=version,
                                     timeout_seconds=0, cluster=self.plan.cluster,
                                     namespace=self.plan.namespace),
                          f"take v{version} out of rotation", **self.lb)
        await self.remove(version)
        self.show(0, self.shown[1] if self.shown else self.old_count)

    async def finish(self, old: list[int]) -> None:
        """The new version serves: nothing is left to undo, only old containers to clear."""
        self.wf.commit()
        for version in old:
            try:
                await self.remove(version)
            except ActivityError as error:
                self.wf.event(f"could not remove v{version}: {cause_of(error)}")

    def show(self, new: int, old: int) -> None:
        """Record replicas and traffic split per version for the status query."""
        self.shown = (new, old)
        total = new + old
        versions = [VersionStatus(version=self.plan.to_version, desired=new, ready=new,
                                  traffic_percent=round(100 * new / total, 1) if total else 0)]
        if self.old_version:
            versions.append(VersionStatus(version=self.old_version, desired=old, ready=old,
                                          traffic_percent=round(100 * old / total, 1)
                                          if total else 0))
        self.wf.progress.versions = versions
