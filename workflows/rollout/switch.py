"""Fast rollback: the old version back at full strength in one step.

In an incident the previous baseline is known to have served well until recently, so its
image comes back with every replica at once, is put in rotation as soon as it is healthy,
and the version being rolled back is drained and removed: no steps, no stable waits, no
analysis. Its image is still on the engine (images outlive their containers), so no pull
is needed. ``slipway rollback --gradual`` takes the environment's usual strategy instead.

Once the old version serves all traffic the rollback's outcome is decided: the removal of the
version rolled back goes on after the outcome is reported (workflows/outcome.py), so
``rollback --wait`` returns when users are back, not when the containers are gone.
"""

from __future__ import annotations

from functools import partial

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.rollout.base import Rollout

# The replaced version is removed after the outcome is reported (before: before the baseline
# was written): runs started before it replay removing first.
FAST_ROLLBACK_CLEANUP_PATCH = "fast-rollback-cleanup-after-outcome"


class Switch(Rollout):
    async def carry_out(self, leftovers: list[int]) -> None:
        plan = self.plan
        for version in leftovers:  # debris of an earlier release whose undo failed
            await self.drain(version, keep=0)
            await self.remove(version)
        self.wf.progress.steps = self.wf.progress.step = 1
        self.wf.push_undo(f"remove v{plan.to_version}", self.tear_down)
        self.wf.set_stage("shifting", f"fast rollback: v{plan.to_version}×{plan.replicas} "
                          f"(baseline {plan.rollback_to}'s image) replaces "
                          f"v{self.old_version}×{self.old_count}")
        await self.bring_up(plan.to_version, self.target, plan.replicas)
        self.show(plan.replicas, self.old_count)
        if self.old_version and self.old_count:
            self.push_restore()
            await self.drain(self.old_version, keep=0)
            self.show(plan.replicas, 0)
        # The old version is out of rotation: commit, then clear its containers.
        if not self.old_version or not workflow.patched(FAST_ROLLBACK_CLEANUP_PATCH):
            await self.finish([self.old_version] if self.old_version else [])
            return
        self.wf.commit()
        self.wf.after_outcome(f"remove v{self.old_version} (the version rolled back)",
                              partial(self.remove, self.old_version))
