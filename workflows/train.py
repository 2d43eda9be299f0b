"""TrainWorkflow: several applications released together (a release train).

prepare (every member checked, the train recorded) → one approval for the whole train →
members as child ReleaseWorkflows in dependency order, independent ones in parallel →
close the train. When a member fails (its own release has rolled itself back), the members
still running are cancelled (each rolls itself back) and those that went out are rolled
back to the baseline they started from, newest first: the joint abort. A cancel of the train
does the same. A rollback that cannot start because another release of that environment runs
waits for it (durable timers, bounded backoff); the train is closed (``finish_train``)
whatever each member ends as.

Children keep the ids of ordinary releases (``release:APP:ENV``), so ``slipway status APP
ENV`` follows a member, and no other release can run in its environment meanwhile.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.catalogue import CatalogueActivities
    from activities.notify import NotifyActivities
    from schemas.approvals import train_subject
    from schemas.enums import ReleaseState
    from schemas.models import NotifyInput, ReleaseOutcome, ReleaseRequest
    from schemas.trains import (
        FinishTrainInput,
        PrepareTrainInput,
        TrainEvent,
        TrainMember,
        TrainMemberStatus,
        TrainOutcome,
        TrainPlan,
        TrainRequest,
        TrainStatus,
        waves,
    )

    # Re-exported: callers name a train's workflow id from here.
    from schemas.trains import train_workflow_id as train_workflow_id
    from workflows import search, versioning
    from workflows.approval import ApprovalDesk, ApprovalHandlers
    from workflows.cancellation import to_the_end
    from workflows.policies import QUICK, RETRY, UNTIL_DONE
    from workflows.release import ReleaseWorkflow
    from workflows.rollout import cause_of


# Members (and joint-abort rollbacks) start with the App, Env and Stage search attributes, as
# a release started by hand does: ``freeze now`` finds running releases by them.
MEMBER_SEARCH_PATCH = "train-members-searchable"
# A joint abort's rollback that cannot start (another release of the member's environment
# runs: the id ``release:APP:ENV`` is taken) waits for it and tries again instead of failing
# the train with the member left on the train's version and the train never closed.
ROLLBACK_WAITS_PATCH = "train-rollback-waits-for-env"
# Backoff between those tries: durable timers, doubling, never longer apart than the cap (a
# release waiting out a week's freeze costs the train a few events every ten minutes).
ROLLBACK_RETRY_FIRST = timedelta(seconds=5)
ROLLBACK_RETRY_MAX = timedelta(minutes=10)


class TrainFailed(Exception):
    """A member failed or the train was stopped: roll back what went out."""


# Why train runs are pinned: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.TRAIN)
class TrainWorkflow(ApprovalHandlers):
    progress: TrainStatus

    def __init__(self) -> None:
        self.progress = TrainStatus(app="")
        self._desk = ApprovalDesk()
        self._children: dict[str, ChildWorkflowHandle[ReleaseWorkflow, ReleaseOutcome]] = {}
        self._order: list[str] = []  # members in the order they went out
        self._running: list[asyncio.Future[None]] = []

    @workflow.run
    async def run(self, request: TrainRequest) -> TrainOutcome:
        info = workflow.info()
        self.progress = TrainStatus(app=request.name, requested_by=request.requested_by)
        plan: TrainPlan = await workflow.execute_activity_method(
            CatalogueActivities.prepare_train,
            PrepareTrainInput(request=request, workflow_id=info.workflow_id, run_id=info.run_id),
            start_to_close_timeout=QUICK, retry_policy=RETRY,
            summary=f"check and record train {request.name}")
        self.progress.approvers = plan.approvers
        self.progress.members = [TrainMemberStatus(app=m.app, env=m.env,
                                                   from_version=m.from_version,
                                                   workflow_id=m.workflow_id)
                                 for m in plan.members]
        approved_by = ""
        try:
            if plan.approval_required:
                approved_by = await self._await_approval(plan)
            await self._run_members(request, plan)
        except (TrainFailed, ChildWorkflowError, ApplicationError,
                asyncio.CancelledError) as error:
            reason = "cancelled" if isinstance(error, asyncio.CancelledError) else str(
                cause_of(error) if isinstance(error, ChildWorkflowError) else error)
            state = await to_the_end(self._joint_abort(plan, reason, approved_by))
            if isinstance(error, asyncio.CancelledError):
                raise
            raise ApplicationError(f"train {request.name} {state}: {reason}",
                                   type=f"Train_{state}", non_retryable=True) from None
        await self._finish(plan, ReleaseState.SUCCEEDED, approved_by)
        self._stage("succeeded", f"{len(plan.members)} applications released")
        await self._notify(f"train {request.name} succeeded", ", ".join(
            f"{m.app}@{m.env} v{m.to_version}" for m in self.progress.members))
        return TrainOutcome(state=ReleaseState.SUCCEEDED, name=request.name,
                            train_id=plan.train_id, members=self.progress.members)

    # -- members ------------------------------------------------------------------------

    async def _run_members(self, request: TrainRequest, plan: TrainPlan) -> None:
        """Wave by wave; the first failure in a wave stops the train at once (the rest of the
        wave is cancelled by the joint abort, not waited for)."""
        by_app = {member.app: member for member in request.members}
        for wave in waves(request.members):
            self._stage("releasing", " + ".join(wave))
            self._running = [asyncio.ensure_future(self._release(by_app[app], plan))
                             for app in wave]
            await workflow.wait(self._running, return_when=asyncio.FIRST_EXCEPTION)
            for task in self._running:
                if task.done() and task.exception() is not None:
                    raise TrainFailed(str(task.exception()))

    async def _release(self, member_request: TrainMember, plan: TrainPlan) -> None:
        member = self._member(member_request.app)
        child_request = ReleaseRequest(
            app=member.app, env=member.env, image=member_request.image, ref=member_request.ref,
            requested_by=self.progress.requested_by, train_id=plan.train_id,
            rollback_to=member_request.rollback_to)
        if member_request.after:  # its dependencies are out: say so in its history
            self._event(f"{member.app}: {', '.join(member_request.after)} went out first")
        member.state = "releasing"
        try:
            handle = await workflow.start_child_workflow(
                ReleaseWorkflow.run, child_request, id=member.workflow_id,
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=self._searchable(member),
                static_summary=f"{member.app}@{member.env} in train {self.progress.app}")
        except Exception as error:  # noqa: BLE001 - e.g. a release already runs there
            member.state, member.error = "failed", f"could not start: {error}"
            self._event(f"{member.app}: {member.error}")
            raise TrainFailed(f"{member.app}@{member.env} {member.error}") from None
        self._children[member.app] = handle
        member.run_id = handle.first_execution_run_id or ""
        self._event(f"{member.app}@{member.env}: releasing")
        try:
            outcome = await handle
        except ChildWorkflowError as error:
            # Failed or cancelled, its release rolled itself back to v<from>.
            member.state, member.error = "rolled_back", cause_of(error)
            self._event(f"{member.app}@{member.env} ended: {member.error}")
            raise TrainFailed(f"{member.app}@{member.env} failed: {member.error}") from None
        finally:
            self._children.pop(member.app, None)
        member.state, member.to_version = "succeeded", outcome.baseline_version
        self._order.append(member.app)
        self._event(f"{member.app}@{member.env}: baseline v{outcome.baseline_version}")

    async def _joint_abort(self, plan: TrainPlan, reason: str, approved_by: str) -> ReleaseState:
        """Cancel what still runs, roll back what went out (newest first), close the train."""
        self._stage("rolling_back", reason)
        for app, handle in list(self._children.items()):
            self._event(f"{app}: cancelling (it rolls itself back)")
            handle.cancel()
        # Wait until every member still releasing has ended (rolled itself back).
        await asyncio.gather(*self._running, return_exceptions=True)
        state = ReleaseState.ROLLED_BACK
        for app in reversed(self._order):
            if not await self._roll_back(app, plan):
                state = ReleaseState.FAILED
        await self._finish(plan, state, approved_by, reason)
        self._stage(str(state), reason)
        await self._notify(("ALERT: " if state == ReleaseState.FAILED else "")
                           + f"train {self.progress.app} {state}", reason)
        return state

    async def _roll_back(self, app: str, plan: TrainPlan) -> bool:
        member = self._member(app)
        if member.from_version == 0:
            member.rollback = "nothing to go back to (first release)"
            self._event(f"{app}: {member.rollback}")
            return False
        member.rollback = "running"
        self._event(f"{app}@{member.env}: rolling back to v{member.from_version}")
        handle = await self._start_rollback(member, plan)
        if handle is None:
            return False
        try:
            outcome = await handle
        except ChildWorkflowError as error:
            member.rollback = f"failed: {cause_of(error)}"
            self._event(f"{app}: rollback {member.rollback}")
            return False
        member.rollback = f"back on v{member.from_version} (baseline v{outcome.baseline_version})"
        member.state = "rolled_back"
        self._event(f"{app}@{member.env}: {member.rollback}")
        return True

    async def _start_rollback(
        self, member: TrainMemberStatus, plan: TrainPlan,
    ) -> ChildWorkflowHandle[ReleaseWorkflow, ReleaseOutcome] | None:
        """Start the member's rollback child; while another release of its environment runs,
        wait (durable timers, bounded backoff) and try again. ``None``: it cannot start for
        another reason (recorded on the member), so the joint abort goes on without it."""
        delay, tries = ROLLBACK_RETRY_FIRST, 0
        while True:
            try:
                handle = await workflow.start_child_workflow(
                    ReleaseWorkflow.run,
                    ReleaseRequest(app=member.app, env=member.env,
                                   rollback_to=member.from_version,
                                   requested_by=self.progress.requested_by,
                                   train_id=plan.train_id),
                    id=member.workflow_id, parent_close_policy=ParentClosePolicy.ABANDON,
                    search_attributes=self._searchable(member),
                    static_summary=f"joint abort of train {self.progress.app}: {member.app} "
                                   f"back to v{member.from_version}")
            except WorkflowAlreadyStartedError:
                if not workflow.patched(ROLLBACK_WAITS_PATCH):
                    raise  # runs recorded before the patch failed here
                tries += 1
                if tries == 1:
                    member.rollback = f"waiting: {member.workflow_id} running"
                    self._stage("rolling_back", f"{member.app}@{member.env} {member.rollback}"
                                f"; its rollback starts once it has ended")
                await workflow.sleep(delay, summary=f"{member.workflow_id} running: "
                                                    f"try {tries + 1} of {member.app}'s rollback")
                delay = min(delay * 2, ROLLBACK_RETRY_MAX)
                continue
            except Exception as error:  # noqa: BLE001 - the train is closed whatever happens
                if not workflow.patched(ROLLBACK_WAITS_PATCH):
                    raise
                member.rollback = f"failed: could not start: {error}"
                self._event(f"{member.app}: rollback {member.rollback}")
                return None
            if tries:
                member.rollback = "running"
                self._stage("rolling_back", f"{member.app}@{member.env}: {member.workflow_id} "
                                            f"ended, rollback started after {tries} waits")
            return handle

    # -- approval -----------------------------------------------------------------------

    async def _await_approval(self, plan: TrainPlan) -> str:
        # A proof counts only for this run of the train, its record and its members.
        info = workflow.info()
        self._desk.subject = self.progress.approval = train_subject(
            info.workflow_id, info.run_id, plan.train_id,
            [f"{member.app}@{member.env}" for member in plan.members])
        self.progress.awaiting = "approval"
        self._stage("awaiting_approval", f"one of {', '.join(plan.approvers)} must approve")
        apps = ", ".join(f"{m.app}@{m.env}" for m in plan.members)
        await self._notify(f"approval needed: train {self.progress.app}",
                           f"{self.progress.requested_by or 'someone'} asks to release {apps} "
                           f"together; approvers: {', '.join(plan.approvers)}: "
                           f"`slipway train approve {self.progress.app} --as USER`")
        timeout = timedelta(seconds=plan.approval_timeout_seconds)
        try:
            await workflow.wait_condition(lambda: self._desk.decision is not None,
                                          timeout=timeout)
        except TimeoutError:
            raise TrainFailed(f"nobody approved within {timeout}") from None
        finally:
            self.progress.awaiting = ""
        assert self._desk.decision is not None
        approved, decision = self._desk.decision
        if not approved:
            raise TrainFailed(f"rejected by {decision.user}"
                              + (f": {decision.comment}" if decision.comment else ""))
        self._event(f"approved by {decision.user} (via {decision.via})")
        return decision.user

    # -- helpers ------------------------------------------------------------------------

    def _searchable(self, member: TrainMemberStatus) -> TypedSearchAttributes | None:
        """A child release's search attributes (none in runs recorded before the patch)."""
        if not workflow.patched(MEMBER_SEARCH_PATCH):
            return None
        return search.release_attributes(member.app, member.env)

    def _member(self, app: str) -> TrainMemberStatus:
        return next(m for m in self.progress.members if m.app == app)

    async def _finish(self, plan: TrainPlan, state: ReleaseState, approved_by: str,
                      error: str = "") -> None:
        await workflow.execute_activity_method(
            CatalogueActivities.finish_train,
            FinishTrainInput(train_id=plan.train_id, state=state, members=self.progress.members,
                             approved_by=approved_by, error=error),
            start_to_close_timeout=QUICK, retry_policy=UNTIL_DONE, summary=f"record {state}")

    async def _notify(self, title: str, text: str) -> None:
        await workflow.execute_activity_method(
            NotifyActivities.notify, NotifyInput(title=title, text=text),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="notify")

    def _stage(self, stage: str, detail: str) -> None:
        self.progress.stage = stage
        workflow.set_current_details(f"**{stage}**: {detail}\n\n" + "\n".join(
            f"- {m.app}@{m.env}: {m.state}" + (f" ({m.rollback})" if m.rollback else "")
            for m in self.progress.members))
        self._event(f"{stage}: {detail}")

    def _event(self, message: str) -> None:
        self.progress.events.append(TrainEvent(at=workflow.now(), message=message))

    def event(self, message: str) -> None:  # the approval desk's refusals
        self._event(message)

    def _release_name(self) -> str:
        return f"train {self.progress.app}"

    @workflow.query
    def status(self) -> TrainStatus:
        """The train's stage and each member's state and baseline."""
        return self.progress
