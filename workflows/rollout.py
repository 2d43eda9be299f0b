"""How a release replaces one version by another: recreate, or stepped (grayscale, rolling).

``Rollout`` runs inside ReleaseWorkflow and only orchestrates: every effect is an activity
started through the workflow, which also owns the undo stack and the person-facing controls
(pause, promote, abort). Before each change to the environment the matching undo is pushed,
so a failure at any point can put the recorded baseline back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from activities.traffic import TrafficActivities
    from schemas.enums import Strategy
    from schemas.models import (
        DrainInput,
        EnsureFrontendInput,
        HealthCheckInput,
        ImageSpec,
        ListVersionsInput,
        ReleasePlan,
        StartVersionInput,
        TrafficInput,
        VersionRef,
        VersionStatus,
        WaitReadyInput,
    )
    from workflows.steps import Step, gray_plan, rolling_plan

if TYPE_CHECKING:
    from workflows.release import ReleaseWorkflow

# Health is probed this often while waiting for a step to be stable.
HEALTH_INTERVAL_SECONDS = 10


def cause_of(error: BaseException) -> str:
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return getattr(error, "message", None) or str(error) or type(error).__name__


class Rollout:
    """Carries out one strategy for one release plan."""

    def __init__(self, wf: ReleaseWorkflow, plan: ReleasePlan, target: ImageSpec) -> None:
        self.wf = wf
        self.plan = plan
        self.target = target
        self.old_version = 0
        self.old_count = 0

    def ref(self, version: int) -> VersionRef:
        return VersionRef(app=self.plan.app, env_key=self.plan.env_key,
                          cluster=self.plan.cluster, version=version,
                          namespace=self.plan.namespace)

    async def run(self) -> None:
        plan = self.plan
        await self.wf.act(TrafficActivities.ensure_frontend,
                          EnsureFrontendInput(env_key=plan.env_key, lb_port=plan.lb_port,
                                              health_path=plan.health_path,
                                              cluster=plan.cluster, app=plan.app,
                                              namespace=plan.namespace, ports=plan.ports),
                          f"load balancer on port {plan.lb_port}")
        versions: list[int] = await self.wf.act(
            RuntimeActivities.list_versions,
            ListVersionsInput(app=plan.app, env_key=plan.env_key, cluster=plan.cluster,
                              namespace=plan.namespace),
            "list running versions",
        )
        if plan.current is not None and plan.from_version in versions:
            self.old_version, self.old_count = plan.from_version, plan.current_replicas
        leftovers = [v for v in versions if v not in (self.old_version, plan.to_version)]
        if plan.strategy == Strategy.RECREATE:
            await self.recreate(leftovers)
        else:
            await self.stepped(leftovers)

    # -- recreate ---------------------------------------------------------------------------

    async def recreate(self, leftovers: list[int]) -> None:
        """Drain all old instances → stop them → start the new version → enable it."""
        plan = self.plan
        old = [v for v in [self.old_version] if v] + leftovers
        self.push_restore()
        for version in old:
            self.wf.set_stage("draining", f"draining v{version}")
            await self.drain(version, keep=0)
            await self.wf.act(RuntimeActivities.stop_version, self.ref(version),
                              f"stop v{version}", timeout=timedelta(minutes=5))
        self.wf.push_undo(f"remove v{plan.to_version}", self.tear_down)
        self.wf.set_stage("starting", f"starting {plan.replicas} replicas of v{plan.to_version}")
        await self.bring_up(plan.to_version, self.target, plan.replicas)
        self.show(plan.replicas, 0)
        await self.finish(old)

    # -- grayscale and rolling --------------------------------------------------------------

    async def stepped(self, leftovers: list[int]) -> None:
        plan = self.plan
        for version in leftovers:  # debris of an earlier release whose undo failed
            await self.drain(version, keep=0)
            await self.remove(version)
        steps = (gray_plan(plan.gray_steps, plan.replicas, self.old_count)
                 if plan.strategy == Strategy.GRAY
                 else rolling_plan(plan.batch_size, plan.replicas, self.old_count))
        self.wf.progress.steps = len(steps)
        self.wf.push_undo(f"remove v{plan.to_version}", self.tear_down)
        for number, step in enumerate(steps, start=1):
            await self.wf.checkpoint()
            self.wf.progress.step = number
            if step.gate:
                await self.wf.gate(f"step {number}/{len(steps)}: promote to continue")
                continue
            if self.wf.promote_full_requested:
                step, self.wf.progress.step = steps[-1], len(steps)
            await self.run_step(number, len(steps), step)
            if self.wf.progress.step == len(steps):
                break
        # The last step shut the old version already; only a leftover count remains to clear.
        await self.finish([self.old_version] if self.old_version and self.old_count else [])

    async def run_step(self, number: int, total: int, step: Step) -> None:
        plan = self.plan
        last = step.new == plan.replicas and step.old == 0
        self.wf.set_stage("shifting", f"step {number}/{total}: v{plan.to_version}×{step.new}"
                          + (f", v{self.old_version}×{step.old}" if self.old_version else ""))
        await self.bring_up(plan.to_version, self.target, step.new)
        if not last:
            await self.scale_old(step.old)
        self.show(step.new, self.old_count)
        await self.wait_stable(step.new)
        if last:
            # Seed 004: wait until every version is stable, then shut the old one.
            await self.scale_old(0)
            self.show(step.new, 0)

    async def wait_stable(self, replicas: int) -> None:
        """A durable timer during which every new replica is health-checked."""
        wf, plan = self.wf, self.plan
        if plan.stable_seconds <= 0 or wf.promote_full_requested:
            return
        wf.set_stage("waiting_stable", f"v{plan.to_version} must stay healthy for "
                     f"{plan.stable_seconds}s")
        remaining = timedelta(seconds=plan.stable_seconds)
        while remaining > timedelta(0):
            started = workflow.now()
            tick = min(remaining, timedelta(seconds=HEALTH_INTERVAL_SECONDS))
            if await wf.interrupted_within(tick):
                await wf.checkpoint()  # raises on abort, waits while paused
                if wf.take_promote():
                    wf.event("stable wait skipped by promote")
                    return
                continue
            remaining -= workflow.now() - started
            problems: list[str] = await wf.act(
                RuntimeActivities.check_health,
                HealthCheckInput(version=self.ref(plan.to_version), replicas=replicas,
                                 port=plan.ports[0], health_path=plan.health_path),
                f"health of v{plan.to_version}",
            )
            if problems:
                raise ApplicationError(f"v{plan.to_version} unhealthy while waiting for stable: "
                                       + "; ".join(problems), type="Unhealthy",
                                       non_retryable=True)

    async def scale_old(self, count: int) -> None:
        if not self.old_version or count >= self.old_count:
            return
        self.push_restore()
        await self.drain(self.old_version, keep=count)
        if count == 0:
            await self.remove(self.old_version)
        else:
            assert self.plan.current is not None  # an old version implies a baseline
            await self.start(self.old_version, self.plan.current, count)
        self.old_count = count

    # -- building blocks --------------------------------------------------------------------

    def push_restore(self) -> None:
        """Push, once, the undo that brings the baseline's version back to full strength."""
        plan = self.plan
        current = plan.current
        if current is None or not plan.from_version or self.wf.has_undo("restore"):
            return

        async def restore() -> None:
            await self.bring_up(plan.from_version, current, plan.current_replicas)

        self.wf.push_undo(f"restore v{plan.from_version}", restore)

    async def start(self, version: int, image: ImageSpec, replicas: int) -> None:
        plan = self.plan
        await self.wf.act(RuntimeActivities.start_version,
                          StartVersionInput(version=self.ref(version), image=image.run_ref,
                                            replicas=replicas, ports=plan.ports,
                                            env_vars=plan.env_vars, cpu=plan.cpu,
                                            memory=plan.memory,
                                            health_path=plan.health_path),
                          f"run {replicas}× v{version}", timeout=timedelta(minutes=10))

    async def bring_up(self, version: int, image: ImageSpec, replicas: int) -> None:
        """Start replicas of a version, wait until they are healthy, put them in rotation."""
        plan = self.plan
        await self.start(version, image, replicas)
        instances = await self.wf.act(
            RuntimeActivities.wait_ready,
            WaitReadyInput(version=self.ref(version), replicas=replicas, port=plan.ports[0],
                           health_path=plan.health_path,
                           deadline_seconds=plan.progress_deadline_seconds),
            f"wait until {replicas}× v{version} are healthy",
            timeout=timedelta(seconds=plan.progress_deadline_seconds + 60), heartbeat=True,
        )
        await self.wf.act(TrafficActivities.add_to_lb,
                          TrafficInput(env_key=plan.env_key, instances=instances,
                                       cluster=plan.cluster, namespace=plan.namespace),
                          f"put v{version} in rotation")

    async def drain(self, version: int, keep: int) -> None:
        plan = self.plan
        await self.wf.act(TrafficActivities.drain,
                          DrainInput(env_key=plan.env_key, version=version, keep=keep,
                                     timeout_seconds=plan.drain_timeout_seconds,
                                     cluster=plan.cluster, namespace=plan.namespace),
                          f"drain v{version}" + (f" down to {keep}" if keep else ""),
                          timeout=timedelta(seconds=plan.drain_timeout_seconds + 60))

    async def remove(self, version: int) -> None:
        await self.wf.act(RuntimeActivities.remove_version, self.ref(version),
                          f"remove v{version}")

    async def tear_down(self) -> None:
        """Undo of starting the new version: out of rotation at once, containers removed."""
        version = self.plan.to_version
        await self.wf.act(TrafficActivities.remove_from_lb,
                          DrainInput(env_key=self.plan.env_key, version=version,
                                     timeout_seconds=0, cluster=self.plan.cluster,
                                     namespace=self.plan.namespace),
                          f"take v{version} out of rotation")
        await self.remove(version)

    async def finish(self, old: list[int]) -> None:
        """The new version serves: nothing is left to undo, only old containers to clear."""
        self.wf.clear_undo()
        for version in old:
            try:
                await self.remove(version)
            except ActivityError as error:
                self.wf.event(f"could not remove v{version}: {cause_of(error)}")

    def show(self, new: int, old: int) -> None:
        """Record replicas and traffic split per version for the status query."""
        total = new + old
        versions = [VersionStatus(version=self.plan.to_version, desired=new, ready=new,
                                  traffic_percent=round(100 * new / total, 1) if total else 0)]
        if self.old_version:
            versions.append(VersionStatus(version=self.old_version, desired=old, ready=old,
                                          traffic_percent=round(100 * old / total, 1)
                                          if total else 0))
        self.wf.progress.versions = versions
