"""Recreate: drain all old instances → stop them → start the new version → enable it.

The seeds' "correct release flow" for applications that cannot run two versions at once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.runtime import RuntimeActivities
    from workflows.rollout.base import Rollout


class Recreate(Rollout):
    async def carry_out(self, leftovers: list[int]) -> None:
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
