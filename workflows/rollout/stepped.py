"""Stepped rollouts: grayscale (steps such as ``1, 50%, 100%``) and rolling (batches).

Each step starts new replicas, waits until they are healthy, puts them in rotation, drains the
old replicas it retires, then waits for stable: a durable timer during which every new replica
is health-checked. A ``gate`` step waits for ``promote``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from schemas.enums import Strategy
    from schemas.models import HealthCheckInput, WatchHealthInput
    from workflows.rollout.analysis import AnalysedWait
    from workflows.rollout.base import Rollout
    from workflows.steps import (
        Step,
        analysis_ticks_problem,
        gray_plan,
        rolling_plan,
        stable_seconds_problem,
    )

# Health is probed this often while waiting for a step to be stable.
HEALTH_INTERVAL_SECONDS = 10
# Stable waits as one watching activity per window (workflow.patched marker).
STABLE_WATCH_PATCH = "stable-wait-one-activity"


async def beside(main: Awaitable[None], side: Awaitable[None]) -> None:
    """Both to their end (an undo must never race the other), then the first error."""
    results = await asyncio.gather(main, side, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class Stepped(Rollout):
    async def carry_out(self, leftovers: list[int]) -> None:
        plan = self.plan
        for version in leftovers:  # debris of an earlier release whose undo failed
            await self.drain(version, keep=0)
            await self.remove(version)
        steps = (gray_plan(plan.gray_steps, plan.replicas, self.old_count)
                 if plan.strategy == Strategy.GRAY
                 else rolling_plan(plan.batch_size, plan.replicas, self.old_count))
        self.wf.progress.steps = len(steps)
        waits = sum(1 for step in steps if not step.gate)
        if problem := (stable_seconds_problem(plan.stable_seconds, waits)
                       or analysis_ticks_problem(plan.stable_seconds, waits, plan.analysis)):
            # Before anything changes: a history that outgrows Temporal's limit is terminated
            # mid-rollout, with nothing undone.
            raise ApplicationError(problem, type="StableTooLong", non_retryable=True)
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
        if self.hosts is not None and not last and self.shrinks_old(step.old):
            # Hosts with agents: the new replicas go into rotation and the old ones out in
            # one load-balancer activity, then the old ones are trimmed on every host.
            self.push_restore()
            await self.bring_up(plan.to_version, self.target, step.new,
                                then_drain=self.drain_input(self.old_version, step.old))
            self.old_count = step.old
            self.show(step.new, self.old_count)
            # Out of rotation already: removed while the new replicas prove stable.
            await beside(self.wait_stable(step.new),
                         self.hosts.trim(self.ref(self.old_version), step.old))
        else:
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
        """The new replicas must stay healthy for the stable time (or a person promotes)."""
        wf, plan = self.wf, self.plan
        if plan.stable_seconds <= 0 or wf.promote_full_requested:
            if plan.analysis is not None:  # no silent off: say why nothing is measured
                wf.event(f"analysis: step {wf.progress.step} not measured: "
                         + ("promote_full skipped the stable wait" if plan.stable_seconds > 0
                            else "the stable time is 0s, so there is no window to judge "
                                 "it in; set --stable for the environment"))
            return
        wf.set_stage("waiting_stable", f"v{plan.to_version} must stay healthy for "
                     f"{plan.stable_seconds}s" + (" and pass canary analysis"
                                                  if plan.analysis is not None else ""))
        if plan.analysis is not None:
            await AnalysedWait(self, plan.analysis, replicas, wf.progress.step).run()
            return
        with wf.looking(plan.to_version, "watch_health", replicas):
            if workflow.patched(STABLE_WATCH_PATCH):
                await self.watch_stable(replicas)
            else:  # histories recorded before the patch: a timer and a probe per tick
                await self.tick_stable(replicas)

    async def watch_stable(self, replicas: int) -> None:
        """One heartbeating activity per window probes health every 10 s: a handful of
        history events per window, however long, where a timer per tick wrote ~11 a tick."""
        wf, plan = self.wf, self.plan
        check = HealthCheckInput(version=self.ref(plan.to_version), replicas=replicas,
                                 port=plan.ports[0], health_path=plan.health_path)
        remaining = float(plan.stable_seconds)
        while remaining > 0:
            started = workflow.now()
            problems: list[str] | None = await self.watch_health(
                WatchHealthInput(check=check, seconds=remaining,
                                 interval_seconds=HEALTH_INTERVAL_SECONDS, report=True),
                f"v{plan.to_version} stays healthy for {remaining:.0f}s",
                timeout=timedelta(seconds=remaining + 120))
            if problems is None:  # a person intervened
                remaining -= (workflow.now() - started).total_seconds()
                await wf.checkpoint()  # raises on abort, waits while paused
                if wf.take_promote():
                    wf.event("stable wait skipped by promote")
                    return
                continue
            if problems:
                raise ApplicationError(f"v{plan.to_version} unhealthy while waiting for stable: "
                                       + "; ".join(problems), type="Unhealthy",
                                       non_retryable=True)
            return

    async def tick_stable(self, replicas: int) -> None:
        """The wait as shipped before STABLE_WATCH_PATCH: kept so those histories replay."""
        wf, plan = self.wf, self.plan
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

    def shrinks_old(self, count: int) -> bool:
        return bool(self.old_version) and count < self.old_count

    async def scale_old(self, count: int) -> None:
        if not self.shrinks_old(count):
            return
        self.push_restore()
        await self.drain(self.old_version, keep=count)
        if count == 0:
            await self.remove(self.old_version)
        elif self.hosts is not None:
            await self.hosts.trim(self.ref(self.old_version), count)
        else:
            assert self.plan.current is not None  # an old version implies a baseline
            await self.start(self.old_version, self.plan.current, count)
        self.old_count = count
