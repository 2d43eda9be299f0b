"""The approval desk of a release: who may approve or reject, the four-eyes rule, and the
proof that the approver sent it. Updates (CLI, receiver) and, later, signals share it.

A decision is checked twice. The Update's validator refuses at once what the workflow alone
can judge (not waiting, not an approver, the requester approving their own release: names
compared through :func:`schemas.identities.same_person`). The handler then has an activity
verify the signed proof against the approver's tokens in the catalogue, and re-checks the
desk, since another decision may have won meanwhile: the first accepted decision wins.

The proof must name what the desk is waiting on, its :class:`ApprovalSubject`: this run
(``workflow.info().run_id``, never reused by the next release of the environment) and its
content (the release's target image and change, a train's record and members). The
verifying activity spends the proof in the catalogue, so a copy from history counts nowhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Protocol

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import CatalogueActivities
    from schemas.approvals import ApprovalSubject
    from schemas.identities import same_person
    from schemas.models import ApprovalInput, ApprovalVerdict, VerifyApprovalInput
    from workflows.policies import QUICK, RETRY

# Releases started before approvals carried proofs replay without the verification.
APPROVAL_PROOF_PATCH = "approval-proof"


class DeskView(Protocol):
    """What the desk reads of the thing awaiting approval (a release's or a train's status)."""

    app: str
    env: str
    stage: str
    awaiting: str
    requested_by: str
    approvers: list[str]


class ApprovalDesk:
    """The decision a release waits for, and the proofs already spent on it."""

    def __init__(self) -> None:
        self.decision: tuple[bool, ApprovalInput] | None = None
        self.used_nonces: list[str] = []
        # What a proof must be bound to; set by the workflow when it starts waiting.
        self.subject: ApprovalSubject | None = None

    def refusal(self, progress: DeskView, approved: bool, data: ApprovalInput) -> str:
        """Why ``data.user`` may not decide now (empty: they may)."""
        if progress.awaiting != "approval" or self.decision is not None:
            decided = (f"; already {'approved' if self.decision[0] else 'rejected'} by "
                       f"{self.decision[1].user}" if self.decision is not None else "")
            return f"the release is not waiting for approval (stage: {progress.stage}){decided}"
        if data.user not in progress.approvers:
            return (f"{data.user} is not an approver of {progress.app} (approvers: "
                    f"{', '.join(progress.approvers) or 'none'})")
        if approved and same_person(data.user, progress.requested_by):
            form = ("" if data.user == progress.requested_by
                    else f" (as {progress.requested_by})")
            return (f"four eyes: {data.user} requested this release{form} and cannot approve "
                    "it; ask another approver")
        return ""

    async def decide(self, progress: DeskView, approved: bool,
                     data: ApprovalInput) -> ApprovalInput:
        """Verify the proof and take the decision; ApplicationError with the reason if not."""
        if workflow.patched(APPROVAL_PROOF_PATCH):
            decision = "approve" if approved else "reject"
            verdict: ApprovalVerdict = await workflow.execute_activity_method(
                CatalogueActivities.verify_approval,
                VerifyApprovalInput(proof=data.proof, user=data.user,
                                    release=workflow.info().workflow_id, decision=decision,
                                    used_nonces=self.used_nonces, app=progress.app,
                                    env=progress.env, subject=self.subject),
                start_to_close_timeout=QUICK, retry_policy=RETRY,
                summary=f"verify the {decision} of {data.user}")
            if not verdict.ok:
                raise ApplicationError(verdict.reason, type="ApprovalRefused",
                                       non_retryable=True)
            again = self.refusal(progress, approved, data)
            if again:  # another decision won while the proof was checked
                raise ApplicationError(again, type="ApprovalRefused", non_retryable=True)
            self.used_nonces.append(verdict.nonce)
            # The proof has done its job: history keeps how it came, not the proof.
            data = ApprovalInput(user=data.user, comment=data.comment,
                                 via=f"{verdict.via}, token {verdict.token}")
        self.decision = (approved, data)
        return data


class ApprovalHandlers:
    """The approve/reject Updates and signals of ReleaseWorkflow, on its approval desk.

    A mixin so the workflow module keeps to the run; the workflow provides ``progress``, the
    desk, ``event`` and ``_release_name``.
    """

    # Provided by the workflow class (declared here for the type checker only).
    progress: DeskView
    _desk: ApprovalDesk
    event: Callable[[str], None]
    _release_name: Callable[[], str]

    @workflow.update
    async def approve(self, data: ApprovalInput) -> str:
        decided = await self._decide(True, data)
        return f"{decided.user} approved {self._release_name()}"

    @approve.validator
    def _validate_approve(self, data: ApprovalInput) -> None:
        if refusal := self._desk.refusal(self.progress, True, data):
            raise ValueError(refusal)

    @workflow.update
    async def reject(self, data: ApprovalInput) -> str:
        decided = await self._decide(False, data)
        return f"{decided.user} rejected {self._release_name()}"

    @reject.validator
    def _validate_reject(self, data: ApprovalInput) -> None:
        if refusal := self._desk.refusal(self.progress, False, data):
            raise ValueError(refusal)

    # Signals for people in the Web UI (More Actions → Send a Signal) or `temporal workflow
    # signal`: the same desk decides; a refusal cannot be answered, so it is shown instead.
    @workflow.signal(name="approve")
    async def approve_signal(self, data: ApprovalInput) -> None:
        await self._signalled(True, data)

    @workflow.signal(name="reject")
    async def reject_signal(self, data: ApprovalInput) -> None:
        await self._signalled(False, data)

    async def _signalled(self, approved: bool, data: ApprovalInput) -> None:
        if refusal := self._desk.refusal(self.progress, approved, data):
            self._refused(approved, data, refusal)
            return
        with contextlib.suppress(ApplicationError):  # refused: already shown by _decide
            await self._decide(approved, data)

    async def _decide(self, approved: bool, data: ApprovalInput) -> ApprovalInput:
        try:
            return await self._desk.decide(self.progress, approved, data)
        except ApplicationError as refused:
            self._refused(approved, data, refused.message)
            raise

    def _refused(self, approved: bool, data: ApprovalInput, reason: str) -> None:
        """Record a refused decision where people look: the events and the Web UI."""
        message = f"{'approval' if approved else 'rejection'} by {data.user} refused: {reason}"
        self.event(message)
        workflow.set_current_details(f"**{self.progress.stage}**: {message}")
