"""Approve/reject links for an approval notification, one pair per approver.

A link is ``<receiver>/approval/<link>``: it names the approver, the release's run, the
decision and an expiry, signed with the deployment's link secret (schemas.approvals) so the
page it opens shows nothing forged. A link is **not** a credential: everyone in the chat
group sees every approver's links, so deciding through one takes that approver's own API
token (the page asks for it); the receiver then signs the same proof ``slipway approve`` does,
and the four-eyes rule, the run binding, single use and expiry hold. Links are made here, in
the notify activity: never in workflow history or a log.
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

    def link(self, user: str, release: str, run: str, decision: Decision, seconds: int,
             now: float | None = None) -> str:
        segment = sign_link(self.secret(), user, release, run, decision,
                            time.time() if now is None else now, seconds)
        return f"{self.receiver_url}{APPROVAL_PATH}{segment}"

    def markdown(self, request: ApprovalLinkRequest) -> str:
        """A line per approver other than the requester: ``- lead: [approve](…) · [reject](…)``."""
        if not self.secret() or not request.run:
            return ""

        def pair(user: str) -> str:
            approve = self.link(user, request.release, request.run, "approve", request.seconds)
            reject = self.link(user, request.release, request.run, "reject", request.seconds)
            return f"- {user}: [approve]({approve}) · [reject]({reject})"

        lines = [pair(user) for user in request.approvers
                 if not same_person(user, request.requested_by)]
        if not lines:
            return ""
        hours = request.seconds / 3600
        return ("\n\nApprove or reject from here (each link is its approver's own: the page "
                f"asks for your API token; valid {hours:.0f} h):\n" + "\n".join(lines))
