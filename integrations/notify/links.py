"""Approve/reject links for an approval notification, one pair per approver.

A link is ``<receiver>/approval/<proof>``: the proof names the approver, the release, the
decision and an expiry, signed with the deployment's link secret (schemas.approvals). Opening
it shows a confirmation page; confirming sends the same approve/reject Update as the CLI, so
the four-eyes rule, single use and expiry hold. Links are made here, in the notify activity,
and go straight to the chat robot: never into workflow history or a log.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from schemas.approvals import Decision, sign_link
from schemas.identities import same_person
from schemas.models import ApprovalLinkRequest

APPROVAL_PATH = "/approval/"


class ApprovalLinks:
    """Makes the links; ``secret`` is read per message so a rotated secret takes effect."""

    def __init__(self, receiver_url: str, secret: Callable[[], str]) -> None:
        self.receiver_url = receiver_url.rstrip("/")
        self.secret = secret

    def link(self, user: str, release: str, decision: Decision, seconds: int,
             now: float | None = None) -> str:
        proof = sign_link(self.secret(), user, release, decision,
                          time.time() if now is None else now, seconds)
        return f"{self.receiver_url}{APPROVAL_PATH}{proof}"

    def markdown(self, request: ApprovalLinkRequest) -> str:
        """A line per approver other than the requester: ``- lead: [approve](…) · [reject](…)``."""
        if not self.secret():
            return ""
        def pair(user: str) -> str:
            approve = self.link(user, request.release, "approve", request.seconds)
            reject = self.link(user, request.release, "reject", request.seconds)
            return f"- {user}: [approve]({approve}) · [reject]({reject})"

        lines = [pair(user) for user in request.approvers
                 if not same_person(user, request.requested_by)]
        if not lines:
            return ""
        hours = request.seconds / 3600
        return ("\n\nApprove or reject from here (single use, valid "
                f"{hours:.0f} h):\n" + "\n".join(lines))
