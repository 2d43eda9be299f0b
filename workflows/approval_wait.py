"""A release waiting for approval: the approvers told (with links), a reminder before the
approval expires, and the decision taken from the approval desk (workflows/approval.py).

A mixin of ReleaseWorkflow, which provides the desk, the stage board, activities and
notifications.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import CatalogueActivities
    from schemas.approvals import release_subject
    from schemas.enums import ReleaseState
    from schemas.models import (
        ApprovalLinkRequest,
        ImageSpec,
        NoteApprovalInput,
        ReleasePlan,
        ReleaseStatus,
    )
    from workflows.approval import ApprovalDesk
    from workflows.compensation import ReleaseEnded

# Releases started before approval reminders replay without the reminder timer.
APPROVAL_REMINDER_PATCH = "approval-reminder"
# The approval is noted in the background: the rollout starts one activity sooner.
APPROVED_IN_BACKGROUND_PATCH = "approval-noted-in-background"


class ReleaseApproval:
    """Waiting for ``approve`` / ``reject`` (the workflow initialises the fields)."""

    progress: ReleaseStatus
    _desk: ApprovalDesk
    _abort: str | None
    # Provided by the workflow class (declared here for the type checker only).
    set_stage: Callable[[str, str], None]
    event: Callable[[str], None]
    act: Callable[..., Awaitable[Any]]
    checkpoint: Callable[[], Awaitable[None]]
    in_background: Callable[[Any, Any, str], None]

    if TYPE_CHECKING:
        async def _notify(self, title: str, text: str,
                          links: ApprovalLinkRequest | None = None) -> None: ...

    async def _await_approval(self, plan: ReleasePlan, target: ImageSpec,
                              change_id: int | None) -> str:
        """Wait for ``approve`` or ``reject`` from an approver, up to the approval timeout.
        A proof counts only for this run, this target image and this change."""
        info = workflow.info()
        self._desk.subject = self.progress.approval = release_subject(
            info.workflow_id, info.run_id, target.image, target.digest, change_id)
        self.progress.awaiting = "approval"
        self.set_stage("awaiting_approval", f"one of {', '.join(plan.approvers)} must approve")
        await self.act(CatalogueActivities.note_approval,
                       NoteApprovalInput(release_id=plan.release_id), "note: awaiting approval",
                       heartbeat=False)
        links = ApprovalLinkRequest(release=info.workflow_id, run=info.run_id,
                                    approvers=plan.approvers, requested_by=plan.requested_by,
                                    seconds=plan.approval_timeout_seconds)
        how = (f"{plan.requested_by or 'someone'} asks to release {target.image}; approvers: "
               f"{', '.join(plan.approvers)}: `SLIPWAY_TOKEN=<your token> slipway approve "
               f"{plan.app} {plan.env} --as USER`")
        await self._notify(f"approval needed: {plan.app}@{plan.env} v{plan.to_version}", how,
                           links=links)
        timeout = timedelta(seconds=plan.approval_timeout_seconds)
        try:
            await self._wait_for_decision(plan, timeout, how, links)
        except TimeoutError:
            raise ReleaseEnded(ReleaseState.APPROVAL_EXPIRED,
                               f"nobody approved within {timeout}") from None
        finally:
            self.progress.awaiting = ""
        await self.checkpoint()
        assert self._desk.decision is not None
        approved, decision = self._desk.decision
        note = f": {decision.comment}" if decision.comment else ""
        via = f" (via {decision.via})" if decision.via else ""
        if not approved:
            raise ReleaseEnded(ReleaseState.REJECTED, f"rejected by {decision.user}{via}{note}")
        self.event(f"approved by {decision.user}{via}{note}")
        noted = NoteApprovalInput(release_id=plan.release_id, approver=decision.user,
                                  via=decision.via)
        if workflow.patched(APPROVED_IN_BACKGROUND_PATCH):
            # Bookkeeping: the rollout need not wait for it (finish_release records the
            # approver again); settled before the release ends.
            self.in_background(CatalogueActivities.note_approval, noted,
                               f"note: approved by {decision.user}")
        else:
            await self.act(CatalogueActivities.note_approval, noted,
                           f"note: approved by {decision.user}", heartbeat=False)
        return decision.user

    async def _wait_for_decision(self, plan: ReleasePlan, timeout: timedelta, how: str,
                                 links: ApprovalLinkRequest) -> None:
        """Wait for a decision or abort; remind the approvers shortly before the approval
        expires (a quarter of the timeout before, at most an hour). TimeoutError: expired."""
        def decided() -> bool:
            return self._desk.decision is not None or self._abort is not None

        if not workflow.patched(APPROVAL_REMINDER_PATCH):
            await workflow.wait_condition(decided, timeout=timeout)
            return
        lead = min(timeout / 4, timedelta(hours=1))
        try:
            await workflow.wait_condition(decided, timeout=timeout - lead)
        except TimeoutError:
            expires = workflow.now() + lead
            self.event(f"reminded {', '.join(plan.approvers)}: the approval expires at "
                       f"{expires:%Y-%m-%d %H:%M} UTC")
            await self._notify(
                f"reminder: approval of {plan.app}@{plan.env} v{plan.to_version} expires at "
                f"{expires:%H:%M} UTC", how,
                links=links.model_copy(update={"seconds": int(lead.total_seconds())}))
            await workflow.wait_condition(decided, timeout=lead)
