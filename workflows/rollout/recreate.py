"""Recreate: drain all old instances → stop them → start the new version → enable it.

The seeds' "correct release flow" for applications that cannot run two versions at once.
With an analysis policy the new version is judged once it serves, before the release
commits: the same analysed wait as a gray step, over the stable time, so a failing figure
rolls back (the new version removed, the old one started again).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.rollout.analysis import AnalysedWait
    from workflows.rollout.base import Rollout
    from workflows.steps import analysis_ticks_problem, stable_seconds_problem

# Recreate releases with a policy judge the new version after it starts (before the patch
# they committed without a measurement): runs started before it replay without the wait.
RECREATE_ANALYSIS_PATCH = "recreate-analysed-wait"


class Recreate(Rollout):
    async def carry_out(self, leftovers: list[int]) -> None:
        plan = self.plan
        analysed = self.analysed()
        old = [v for v in [self.old_version] if v] + leftovers
        self.push_restore()
        for version in old:
            self.wf.set_stage("draining", f"draining v{version}")
            await self.drain(version, keep=0)
            await self.stop(version)
        if old:
            # Nothing old serves any more: no baseline to compare the new version with.
            self.old_count = 0
            self.show(0, 0)
        self.wf.push_undo(f"remove v{plan.to_version}", self.tear_down)
        self.wf.set_stage("starting", f"starting {plan.replicas} replicas of v{plan.to_version}")
        await self.bring_up(plan.to_version, self.target, plan.replicas)
        self.show(plan.replicas, 0)
        if analysed:
            await self.judge()
        await self.finish(old)

    def analysed(self) -> bool:
        """Whether the new version is judged once it serves; refuses, before anything
        changes, a wait whose intervals would outgrow the history."""
        wf, plan = self.wf, self.plan
        if plan.analysis is None:
            return False
        if plan.stable_seconds <= 0:
            wf.event("analysis: not measured: the stable time is 0s, so there is no window "
                     "to judge the new version in; set --stable for the environment")
            return False
        if not workflow.patched(RECREATE_ANALYSIS_PATCH):
            wf.event("analysis: not measured: this release started before recreate releases "
                     "were judged")
            return False
        if problem := (stable_seconds_problem(plan.stable_seconds)
                       or analysis_ticks_problem(plan.stable_seconds, 1, plan.analysis)):
            raise ApplicationError(problem, type="StableTooLong", non_retryable=True)
        return True

    async def judge(self) -> None:
        """The new version serves alone: judge it for the stable time before committing."""
        wf, plan = self.wf, self.plan
        assert plan.analysis is not None
        wf.progress.steps = wf.progress.step = 1
        if wf.promote_full_requested:
            wf.event("analysis: not measured: promote_full skipped the stable wait")
            return
        wf.set_stage("waiting_stable", f"v{plan.to_version} must stay healthy for "
                     f"{plan.stable_seconds}s and pass canary analysis")
        await AnalysedWait(self, plan.analysis, plan.replicas, 1).run()
