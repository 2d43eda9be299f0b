"""Compensation: a release that fails, is aborted or cancelled undoes what it did.

A mixin of ReleaseWorkflow. Before each change to the environment the rollout pushes its undo
(workflows/rollout/base.py); here the stack runs newest first, shielded from cancellation,
every step even when one fails for good, and the release closes ``rolled_back``, or
``failed`` with an alert naming each step that did not undo.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import CatalogueActivities
    from schemas.enums import ReleaseState
    from schemas.models import ApprovalLinkRequest, FinishReleaseInput, ReleasePlan
    from workflows.cancellation import is_cancellation, to_the_end
    from workflows.policies import QUICK, UNTIL_DONE
    from workflows.rollout import Undo, cause_of

# Compensation runs every undo step although one failed (before: it stopped at the first).
UNDO_EVERY_STEP_PATCH = "undo-every-step"


class ReleaseEnded(Exception):
    """The release stops without a failure of its own: rejected, expired or aborted."""

    def __init__(self, state: ReleaseState, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class Compensation:
    """The undo stack run to its end (the workflow initialises the fields and provides the
    stage board and notifications)."""

    _undo: list[tuple[str, Undo]]
    _compensating: bool
    # Provided by the workflow class (declared here for the type checker only).
    set_stage: Callable[[str, str], None]
    event: Callable[[str], None]

    if TYPE_CHECKING:
        async def _notify(self, title: str, text: str,
                          links: ApprovalLinkRequest | None = None) -> None: ...

        async def settle(self) -> None: ...

    async def _give_up(self, plan: ReleasePlan,
                       error: BaseException) -> tuple[ReleaseState, str]:
        """Undo what was done, newest first, and close the release, whatever cancels arrive
        meanwhile: stopping halfway would leave both versions in rotation and the release
        row ``running``."""
        if isinstance(error, ReleaseEnded):
            reason, state = error.reason, error.state
        else:
            reason = "cancelled" if is_cancellation(error) else cause_of(error)
            state = ReleaseState.ROLLED_BACK
        self._compensating = True
        return await to_the_end(self._compensate(plan, state, reason))

    async def _compensate(self, plan: ReleasePlan, state: ReleaseState,
                          reason: str) -> tuple[ReleaseState, str]:
        await self.settle()
        self.set_stage("rolling_back", f"undoing: {reason}")
        not_undone = await self._undo_all(plan)
        if not_undone:
            # Every step that did not undo is named: a person finishes them by hand.
            state = ReleaseState.FAILED
            reason = f"{reason}; not undone: {'; '.join(not_undone)}"
        await workflow.execute_activity_method(
            CatalogueActivities.finish_release,
            FinishReleaseInput(release_id=plan.release_id, state=state, error=reason),
            start_to_close_timeout=QUICK, retry_policy=UNTIL_DONE, summary=f"record {state}",
        )
        self.set_stage(str(state), reason)
        title = f"release {plan.app}@{plan.env} {state}"
        await self._notify(("ALERT: " if not_undone else "") + title, reason)
        return state, reason

    async def _undo_all(self, plan: ReleasePlan) -> list[str]:
        """Run every undo step, newest first, even after one fails for good: a failed removal
        of the new version must not keep the old one from coming back. The one exception:
        when the old version could not be restored, the new one is left serving rather than
        taken away too. Returns each step not undone, with why."""
        not_undone: list[str] = []
        restore_failed = False
        for what, undo in reversed(self._undo):
            if not_undone and not workflow.patched(UNDO_EVERY_STEP_PATCH):
                break  # histories recorded before the patch stopped at the first failure
            if restore_failed and what == f"remove v{plan.to_version}":
                kept = (f"{what} (skipped: v{plan.from_version} could not be restored, so "
                        f"v{plan.to_version} keeps serving)")
                not_undone.append(kept)
                self.event(f"undo {kept}")
                continue
            try:
                await undo()  # retried until done (UNTIL_DONE): only a permanent error stops it
                self.event(f"undone: {what}")
            except (ActivityError, ApplicationError) as undo_error:
                not_undone.append(f"{what} (failed: {cause_of(undo_error)})")
                self.event(f"undo {what} failed: {cause_of(undo_error)}")
                restore_failed = restore_failed or what.startswith("restore")
        return not_undone
