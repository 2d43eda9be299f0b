"""Freezes and deploy windows as a release meets them (a mixin of ReleaseWorkflow).

Before the rollout starts the release asks the catalogue whether its environment is open.
Closed, it waits durably with the reason and opening time in ``status`` and the Web UI; with
``no_wait`` it ends at once. The wait is one timer to the opening time (at most
FREEZE_SAFETY_RECHECK) that a change of the rules cuts short: ``slipway freeze add/remove/now``
signal the releases of the scope (``freezes_changed``, ``thaw``, ``freeze``), so a wait of
any length costs a few events per change and per day, not per ten minutes. Waiting before the
rollout, a release continues as new after FREEZE_CHECKS_PER_RUN looks (carrying its plan,
image, approval and status), so even an incident freeze without end keeps its history
bounded. (Histories recorded before FREEZE_WAIT_PATCH keep the ten-minute re-check.)

An incident freeze declared while a release rolls out (the ``freeze`` signal, sent by
``slipway freeze now``) holds it at its next step the same way (it cannot continue as new
there: a day's safety re-check is its cost). A break-glass release passes both, having had
a second approver; so does a rollback to a baseline (a recent one at once, an older one once
approved), while ``rollback --image`` is held like any release.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import CatalogueActivities
    from schemas.freezes import FreezeCheckInput, FreezeNotice, FreezeVerdict
    from schemas.models import ReleasePlan, ReleaseStatus
    from workflows.policies import QUICK, RETRY

# Releases started before freezes existed replay without the check.
FREEZE_PATCH = "freeze-gate"
# Before FREEZE_WAIT_PATCH: a closed environment is asked again at least this often.
FREEZE_RECHECK = timedelta(minutes=10)
# The wait wakes on the opening time and on signals; this safety re-check only covers a
# signal that never came (Temporal unreachable when the rule changed).
FREEZE_WAIT_PATCH = "freeze-wait-on-change"
FREEZE_SAFETY_RECHECK = timedelta(hours=24)
# Looks at the rules (about a dozen events each) before a release waiting in the gate
# continues as new; also when Temporal suggests it.
FREEZE_CHECKS_PER_RUN = 8


class Frozen(Exception):
    """Asked not to wait (``--no-wait``) and the environment is closed."""


class StillFrozen(Exception):
    """The wait went on long enough in this run: continue as new and wait there."""


class FreezeGate:
    """Wait out freezes and closed windows; the workflow provides the attributes below."""

    progress: ReleaseStatus
    set_stage: Callable[[str, str], None]
    event: Callable[[str], None]
    _abort: str | None
    _freeze_notice: FreezeNotice | None = None
    _thawed: bool = False
    _before_frozen: str = ""

    async def through_freeze(self, plan: ReleasePlan, no_wait: bool = False,
                             may_continue: bool = False) -> None:
        """Return when ``plan.env`` is open (or break glass), or on abort; raise Frozen when
        closed and ``no_wait``; StillFrozen when ``may_continue`` and the wait has looked
        FREEZE_CHECKS_PER_RUN times in this run (the caller continues as new)."""
        if not workflow.patched(FREEZE_PATCH):
            return
        if plan.rollback_to is not None:
            # Recent: an emergency undo. Older: prepare made it wait for a second person.
            # (`rollback --image` has no rollback_to: it waits out freezes as releases do.)
            kind = ("a rollback to recent baseline" if plan.rollback_recent
                    else "an approved rollback to baseline" if plan.approval_required
                    else "a rollback to baseline")
            self.event(f"{kind} v{plan.rollback_to}: freezes and windows do not hold it")
            return
        if plan.break_glass:
            self.event(f"break glass: freezes and windows do not hold this release "
                       f"({plan.break_glass})")
            return
        if workflow.patched(FREEZE_WAIT_PATCH):
            await self._wait_on_change(plan, no_wait, may_continue)
            return
        previous = self.progress.stage
        held = False
        while True:
            verdict: FreezeVerdict = await workflow.execute_activity_method(
                CatalogueActivities.check_freeze, FreezeCheckInput(env=plan.env),
                start_to_close_timeout=QUICK, retry_policy=RETRY,
                summary=f"is {plan.env} open for releases?")
            if verdict.open:
                break
            if no_wait:
                raise Frozen(f"{plan.env} is closed for releases: {verdict.reason}"
                             + _opening(verdict))
            held = True
            self.progress.frozen, self.progress.frozen_until = verdict.reason, verdict.opens_at
            if self.progress.stage != "frozen":
                self.set_stage("frozen", f"{verdict.reason}{_opening(verdict)}")
            self._freeze_notice, self._thawed = None, False
            period = FREEZE_RECHECK
            if verdict.opens_at is not None:
                period = min(period, max(verdict.opens_at - workflow.now(),
                                         timedelta(seconds=1)))
            # Woken early by `thaw` (a freeze lifted) or abort; the loop asks again.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._thawed or self._abort is not None,
                                              timeout=period)
            if self._abort is not None:
                return  # the caller's checkpoint raises the abort
        self.progress.frozen, self.progress.frozen_until = "", None
        self._freeze_notice = None
        if held:
            self.set_stage(previous, f"{plan.env} is open: going on")

    async def _wait_on_change(self, plan: ReleasePlan, no_wait: bool,
                              may_continue: bool) -> None:
        previous = self.progress.stage
        if previous == "frozen":
            previous = self._before_frozen or "preparing"  # resumed by continue-as-new
        held = False
        shown: tuple[str, object] | None = None
        if self.progress.stage == "frozen":
            shown = (self.progress.frozen, self.progress.frozen_until)
        checks = 0
        while True:
            # Reset before asking: a change signalled while the check runs wakes the wait.
            self._freeze_notice, self._thawed = None, False
            verdict: FreezeVerdict = await workflow.execute_activity_method(
                CatalogueActivities.check_freeze, FreezeCheckInput(env=plan.env),
                start_to_close_timeout=QUICK, retry_policy=RETRY,
                summary=f"is {plan.env} open for releases?")
            checks += 1
            if verdict.open:
                break
            if no_wait:
                raise Frozen(f"{plan.env} is closed for releases: {verdict.reason}"
                             + _opening(verdict))
            held = True
            self.progress.frozen, self.progress.frozen_until = verdict.reason, verdict.opens_at
            detail = f"{verdict.reason}{_opening(verdict)}"
            if self.progress.stage != "frozen":
                self._before_frozen = previous
                self.set_stage("frozen", detail)
            elif shown is not None and shown != (verdict.reason, verdict.opens_at):
                self._stage_detail = detail  # the rules changed: a new reason or opening
                workflow.set_current_details(f"**frozen**: {detail}")
                self.event(f"frozen: {detail}")
            shown = (verdict.reason, verdict.opens_at)
            if may_continue and (checks >= FREEZE_CHECKS_PER_RUN
                                 or workflow.info().is_continue_as_new_suggested()):
                raise StillFrozen(detail)
            period = FREEZE_SAFETY_RECHECK
            if verdict.opens_at is not None:
                period = min(period, max(verdict.opens_at - workflow.now(),
                                         timedelta(seconds=1)))
            # One timer; woken early by a change of the rules (freezes_changed, thaw, an
            # incident's freeze) or abort, then the loop asks again.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: (self._thawed or self._freeze_notice is not None
                             or self._abort is not None), timeout=period)
            if self._abort is not None:
                return  # the caller's checkpoint raises the abort
        self.progress.frozen, self.progress.frozen_until = "", None
        self._freeze_notice = None
        if held or self.progress.stage == "frozen":
            self.set_stage(previous, f"{plan.env} is open: going on")

    @workflow.signal
    def freeze(self, notice: FreezeNotice) -> None:
        """An incident freeze: hold at the next step until it is lifted."""
        if self.progress.break_glass:
            self.event(f"freeze declared by {notice.by or 'someone'} ({notice.reason}); "
                       "this break-glass release goes on")
            return
        self._freeze_notice = notice
        self.event(f"freeze declared by {notice.by or 'someone'}: {notice.reason}")

    @workflow.signal
    def thaw(self) -> None:
        """A freeze was lifted: look again now instead of at the next re-check."""
        self._thawed = True

    @workflow.signal
    def freezes_changed(self) -> None:
        """A freeze or window of this release's scope was added or removed: a release
        waiting in one looks again now (others ignore it: they ask before they roll out)."""
        self._thawed = True

    def freeze_declared(self) -> bool:
        return self._freeze_notice is not None


def _opening(verdict: FreezeVerdict) -> str:
    if verdict.opens_at is None:
        return "; opens when the freeze is lifted"
    return f"; opens at {verdict.opens_at:%Y-%m-%d %H:%M} UTC"

