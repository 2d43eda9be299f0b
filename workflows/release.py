"""ReleaseWorkflow: one release (发布单) of an application on one environment.

prepare → build or resolve the image → approval when the environment's policy asks for it →
roll out by strategy (workflows/rollout/) → write baseline N+1. A failure, an unhealthy
step, ``abort`` or a cancellation undoes what was done, newest first, so the environment
ends on a recorded baseline (workflows/compensation.py). People steer it with Updates; the
``status`` query shows it; the ``outcome`` Update answers as soon as the outcome is decided,
before work that only follows from it (a fast rollback's clean-up: workflows/outcome.py).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.workflow import ActivityCancellationType, ActivityHandle

with workflow.unsafe.imports_passed_through():
    from activities.analysis import AnalysisActivities
    from activities.build import BuildActivities
    from activities.catalogue import CatalogueActivities
    from activities.notify import NotifyActivities
    from activities.runtime import RuntimeActivities
    from schemas.analysis import AnalysisTarget, CheckPolicyInput
    from schemas.enums import ReleaseState
    from schemas.models import (
        ApprovalLinkRequest,
        BuildInput,
        FinishReleaseInput,
        ImageSpec,
        NotifyInput,
        PrepareReleaseInput,
        RecordBuildInput,
        ReleaseOutcome,
        ReleasePlan,
        ReleaseRequest,
        ReleaseResume,
        ReleaseStatus,
        ResolveImageInput,
    )

    # Re-exported: callers name a release's workflow id from here.
    from schemas.models import release_workflow_id as release_workflow_id
    from workflows import versioning
    from workflows.approval import ApprovalDesk, ApprovalHandlers
    from workflows.approval_wait import ReleaseApproval
    from workflows.board import StageBoard
    from workflows.cancellation import is_cancellation, stopped, to_the_end
    from workflows.compensation import Compensation, ReleaseEnded
    from workflows.controls import ReleaseControls
    from workflows.freeze import FreezeGate, Frozen, StillFrozen
    from workflows.outcome import OutcomeDesk, Work
    from workflows.policies import (
        HEARTBEAT_TIMEOUT,
        HOST_SCHEDULE_TO_START,
        QUICK,
        RETRY,
        UNTIL_DONE,
        build_queue,
        host_queue,
    )
    from workflows.rollout import Undo, cause_of, rollout_for
    from workflows.rollout.base import Rollout

BUILD_TIMEOUT = timedelta(minutes=30)
# The "rolling out" notification goes out beside the rollout, not before it.
NOTIFY_IN_BACKGROUND_PATCH = "rolling-out-notified-in-background"


# Why release runs are pinned: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.RELEASE)
class ReleaseWorkflow(ApprovalHandlers, ReleaseApproval, ReleaseControls, Compensation,
                      OutcomeDesk, StageBoard, FreezeGate):
    progress: ReleaseStatus

    def __init__(self) -> None:
        self.progress = ReleaseStatus(app="", env="", stage="pending")
        self._undo: list[tuple[str, Undo]] = []
        self._desk = ApprovalDesk()
        self._promote = False
        self.promote_full_requested = False
        self._paused = False
        self._abort: str | None = None
        self._compensating = False
        self._rollout: Rollout | None = None
        # Bookkeeping activities running beside the release (in_background).
        self._background: list[tuple[str, ActivityHandle[Any]]] = []
        # Past the point of no return the new version serves all traffic: abort is refused and
        # only a rollback (a new release) can take it back.
        self._committed = False
        self._stage_detail = ""
        self._plan: ReleasePlan | None = None
        self._freeze_notice = None
        self._thawed = False
        self._before_frozen = ""
        self._outcome: ReleaseOutcome | None = None
        self._after: list[tuple[str, Work]] = []
        self._run_ended = False
        self._outcome_waiters = 0

    # -- the run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseOutcome:
        try:
            outcome = await self._release(request)
        except (Exception, asyncio.CancelledError, workflow.ContinueAsNewError):
            # Not `finally`: a run evicted from the worker's cache is closed with
            # GeneratorExit, and nothing may be awaited then.
            await self.run_ended()
            raise
        await self.run_ended()
        return outcome

    async def _release(self, request: ReleaseRequest) -> ReleaseOutcome:
        info = workflow.info()
        resume = request.resume  # a wait in a freeze continued as new: prepared, approved
        self.progress = ReleaseStatus(app=request.app, env=request.env, stage="preparing",
                                    requested_by=request.requested_by)
        if resume is not None:
            self.progress, self._before_frozen = resume.progress, resume.stage_before_frozen
            plan = resume.plan
        else:
            plan = await workflow.execute_activity_method(
                CatalogueActivities.prepare_release,
                PrepareReleaseInput(request=request, workflow_id=info.workflow_id,
                                    run_id=info.run_id),
                start_to_close_timeout=QUICK, retry_policy=RETRY,
                summary="load application, environment and baseline",
            )
        self.progress.strategy = str(plan.strategy)
        self.progress.approvers = plan.approvers
        self.progress.from_version, self.progress.to_version = plan.from_version, plan.to_version
        self.progress.break_glass = plan.break_glass
        self._plan = plan
        approved_by = ""
        try:
            if resume is not None:
                target, approved_by = resume.target, resume.approved_by
            else:
                if plan.analysis is not None:
                    await self._check_analysis(plan)
                target = await self._target_image(plan, request)
                self.progress.image = target.image
                if plan.approval_required:
                    approved_by = await self._await_approval(plan, target, request.change_id)
            try:
                # A train's member keeps its run: the train follows it by run id.
                await self.through_freeze(plan, no_wait=plan.no_wait,
                                          may_continue=request.train_id is None)
            except Frozen as frozen:
                raise ReleaseEnded(ReleaseState.FAILED, str(frozen)) from None
            except StillFrozen:
                self.event("still frozen: the wait goes on in a new run (continue-as-new)")
                await self.settle()
                workflow.continue_as_new(request.model_copy(update={"resume": ReleaseResume(
                    plan=plan, target=target, approved_by=approved_by,
                    progress=self.progress, stage_before_frozen=self._before_frozen)}))
            await self.checkpoint()
            rolling_out = (f"release {plan.app}@{plan.env} v{plan.to_version}",
                           f"rolling out {target.image} ({plan.strategy})")
            if workflow.patched(NOTIFY_IN_BACKGROUND_PATCH):
                # People hear of it while the rollout starts, not before.
                self.in_background(NotifyActivities.notify, self._notice(*rolling_out), "notify")
            else:
                await self._notify(*rolling_out)
            if plan.analysis_skipped:
                self.event(f"analysis: not measured: {plan.analysis_skipped}")
            self._rollout = rollout_for(self, plan, target)
            await self._rollout.run()
        except (ActivityError, ApplicationError, ReleaseEnded, asyncio.CancelledError) as error:
            if not self._committed:
                state, reason = await self._give_up(plan, error)
                if is_cancellation(error):
                    raise asyncio.CancelledError(reason) from error
                raise ApplicationError(f"release {state}: {reason}", type=f"Release_{state}",
                                       non_retryable=True) from error
            # The new version serves all traffic: nothing to roll back, the release is done.
            self.event(f"{'cancel' if is_cancellation(error) else cause_of(error)} after the "
                       "point of no return: the release is finished, not rolled back")
        outcome = await to_the_end(self._succeed(plan, target, approved_by))
        # Reported already (``outcome``): what is left runs to its end whatever cancels come.
        await to_the_end(self.finish_after(f"baseline v{outcome.baseline_version} written"))
        return outcome

    async def _succeed(self, plan: ReleasePlan, target: ImageSpec,
                       approved_by: str) -> ReleaseOutcome:
        await self.settle()
        result = await workflow.execute_activity_method(
            CatalogueActivities.finish_release,
            FinishReleaseInput(release_id=plan.release_id, state=ReleaseState.SUCCEEDED,
                               image=target, approved_by=approved_by,
                               placement=self._rollout.placement() if self._rollout else {}),
            start_to_close_timeout=QUICK, retry_policy=UNTIL_DONE, summary="write the baseline",
        )
        outcome = ReleaseOutcome(state=ReleaseState.SUCCEEDED, app=plan.app, env=plan.env,
                                 baseline_version=result.baseline_version, image=target.image,
                                 digest=target.digest, after=self.work_after())
        self.decided(outcome)  # `outcome` Updates answer with this workflow task
        written = f"baseline v{result.baseline_version} written"
        after = "; ".join(outcome.after)
        if after:  # only runs since FAST_ROLLBACK_CLEANUP_PATCH hand work over
            self.set_stage("cleaning_up", f"{written}; {after} (the outcome is reported: "
                                          "this goes on in the background)")
        else:
            self.set_stage("succeeded", written)
        await self._notify(f"release {plan.app}@{plan.env} succeeded",
                           f"baseline v{result.baseline_version}: {target.image}"
                           + (f"; {after} in the background" if after else ""))
        return outcome

    async def _check_analysis(self, plan: ReleasePlan) -> None:
        """Refuse, before anything is built or changed, a policy its providers reject
        (a PromQL syntax error, a provider the cluster lacks)."""
        assert plan.analysis is not None
        target = AnalysisTarget(app=plan.app, env=plan.env, env_key=plan.env_key,
                                cluster=plan.cluster, version=plan.to_version,
                                baseline_version=plan.from_version)
        try:
            await self.act(AnalysisActivities.check_analysis,
                           CheckPolicyInput(policy=plan.analysis, target=target),
                           "check the analysis policy")
        except ActivityError as error:
            raise ReleaseEnded(ReleaseState.FAILED, cause_of(error)) from None

    async def _target_image(self, plan: ReleasePlan, request: ReleaseRequest) -> ImageSpec:
        if plan.target is not None and plan.target.digest:
            return plan.target  # a rollback: the baseline recorded image and digest
        if plan.target is not None:
            self.set_stage("resolving", f"checking image {plan.target.image}")
            # On hosts with agents, an agent's engine resolves (and pulls) it.
            on_host = next((host.name for host in plan.hosts if not host.cordoned), "")
            return await self.act(RuntimeActivities.resolve_image,
                                  ResolveImageInput(image=plan.target.image),
                                  f"resolve {plan.target.image}", timeout=timedelta(minutes=10),
                                  task_queue=host_queue(workflow.info().task_queue, on_host)
                                  if on_host else None,
                                  schedule_to_start=HOST_SCHEDULE_TO_START if on_host else None)
        label = request.version_label or f"v{plan.to_version}"
        self.set_stage("building", f"building {plan.app} {label} from {plan.source}")
        image: ImageSpec = await self.act(
            BuildActivities.build_image,
            BuildInput(app=plan.app, source=plan.source, ref=request.ref, version_label=label,
                       workflow_id=workflow.info().workflow_id),
            f"build {plan.app}:{label}", timeout=BUILD_TIMEOUT, task_queue=build_queue(),
        )
        await self.act(CatalogueActivities.record_build,
                       RecordBuildInput(app=plan.app, ref=request.ref, version_label=label,
                                        image=image, workflow_id=workflow.info().workflow_id),
                       "record the build", heartbeat=False)
        return image

    # -- helpers used by Rollout ------------------------------------------------------------

    async def act(self, method: Any, arg: Any, summary: str, timeout: timedelta = QUICK,
                  heartbeat: bool = True, task_queue: str | None = None,
                  schedule_to_start: timedelta | None = None) -> Any:
        """Run an activity; during the rollout an ``abort`` cancels it and stops the release.

        Activities that change the environment or wait heartbeat, so a lost worker is noticed
        within HEARTBEAT_TIMEOUT. A cancelled activity is waited for until it has stopped:
        the undo that follows must not race a late drain or container start. While undoing,
        activities are retried until they succeed (they are idempotent).
        """
        handle = workflow.start_activity_method(
            method, arg, start_to_close_timeout=timeout, summary=summary, task_queue=task_queue,
            schedule_to_start_timeout=schedule_to_start,
            retry_policy=UNTIL_DONE if self._compensating else RETRY,
            heartbeat_timeout=HEARTBEAT_TIMEOUT if heartbeat else None,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        if self._compensating or self._committed:
            return await handle
        try:
            await workflow.wait_condition(lambda: handle.done() or self._abort is not None)
        except asyncio.CancelledError:
            await stopped(handle)  # the release was cancelled: so is the work in flight
            raise
        if not handle.done():
            await stopped(handle)
            raise self._aborted()
        return handle.result()

    async def watch(self, method: Any, arg: Any, summary: str, timeout: timedelta,
                    task_queue: str | None = None,
                    schedule_to_start: timedelta | None = None) -> Any:
        """Run a watching activity until it ends (its result) or a person intervenes
        (``promote``, ``pause``, ``abort``: ``None``, the activity stopped first)."""
        handle = workflow.start_activity_method(
            method, arg, start_to_close_timeout=timeout, summary=summary, retry_policy=RETRY,
            task_queue=task_queue, schedule_to_start_timeout=schedule_to_start,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            await workflow.wait_condition(lambda: handle.done() or self._intervened())
        except asyncio.CancelledError:
            await stopped(handle)
            raise
        if handle.done():
            return handle.result()
        await stopped(handle)
        return None

    async def checkpoint(self) -> None:
        """Stop here on ``abort``; wait here while paused or held by an incident freeze."""
        if self._abort is not None:
            raise self._aborted()
        if self.freeze_declared() and self._plan is not None:
            await self.through_freeze(self._plan)
            if self._abort is not None:
                raise self._aborted()
        if self._paused:
            previous = self.progress.stage
            self.set_stage("paused", "waiting for resume")
            await workflow.wait_condition(lambda: not self._paused or self._abort is not None)
            if self._abort is not None:
                raise self._aborted()
            self.set_stage(previous, "resumed")

    async def gate(self, detail: str) -> None:
        """A manual step: wait for ``promote`` (or ``promote_full``)."""
        if self.promote_full_requested:
            return
        self.progress.awaiting = "promote"
        self.set_stage("gate", detail)
        await workflow.wait_condition(
            lambda: self._promote or self.promote_full_requested or self._abort is not None)
        self.progress.awaiting = ""
        self.take_promote()
        await self.checkpoint()

    async def interrupted_within(self, period: timedelta) -> bool:
        """Sleep durably for ``period``; True when a person intervened before it ended."""
        try:
            await workflow.wait_condition(self._intervened, timeout=period)
        except TimeoutError:
            return False
        return True

    def _intervened(self) -> bool:
        return (self._promote or self.promote_full_requested or self._paused
                or self._abort is not None)

    def take_promote(self) -> bool:
        promoted = self._promote or self.promote_full_requested
        self._promote = False
        return promoted

    def push_undo(self, what: str, undo: Undo) -> None:
        self._undo.append((what, undo))

    def has_undo(self, prefix: str) -> bool:
        return any(what.startswith(prefix) for what, _undo in self._undo)

    def commit(self) -> None:
        """The point of no return: the new version serves all traffic, nothing is undone."""
        self._undo.clear()
        self._committed = True
        self.event(f"v{self.progress.to_version} serves all traffic: committed")

    def _aborted(self) -> ReleaseEnded:
        return ReleaseEnded(ReleaseState.ROLLED_BACK, f"aborted: {self._abort}")

    def _notice(self, title: str, text: str,
                links: ApprovalLinkRequest | None = None) -> NotifyInput:
        if self.progress.break_glass:
            title = f"[BREAK GLASS] {title}"
            text = f"{text}\n\nbreak glass: {self.progress.break_glass}"
        return NotifyInput(title=title, text=text, links=links)

    async def _notify(self, title: str, text: str,
                      links: ApprovalLinkRequest | None = None) -> None:
        await workflow.execute_activity_method(
            NotifyActivities.notify, self._notice(title, text, links),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="notify",
        )

    def in_background(self, method: Any, arg: Any, summary: str) -> None:
        """Start bookkeeping (a note, a notification) without waiting for it: settled
        (:meth:`settle`) before the release ends."""
        self._background.append((summary, workflow.start_activity_method(
            method, arg, start_to_close_timeout=QUICK, retry_policy=RETRY, summary=summary)))

    async def settle(self) -> None:
        """Wait for the bookkeeping started in the background; its failure is an event of
        the release, never the release's failure."""
        while self._background:
            summary, handle = self._background.pop(0)
            try:
                await handle
            except ActivityError as error:
                self.event(f"{summary} failed: {cause_of(error)}")

    async def alert(self, title: str, text: str) -> None:
        await self._notify(title, text)

    # -- query -------------------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ReleaseStatus:
        """Stage, step i/n, replicas and traffic per version, events with times."""
        return self.progress

    def _release_name(self) -> str:
        return f"{self.progress.app}@{self.progress.env} v{self.progress.to_version}"
