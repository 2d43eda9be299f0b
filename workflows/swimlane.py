"""SwimlaneWorkflow: one durable workflow per swimlane (泳道), id ``swimlane:<name>``.

create (every resource written to the ledger as soon as it exists) → idle with durable TTL
timers (notice after ``ttl_seconds``, delete after ``grace_seconds`` more) → teardown in
reverse ledger order. People steer it with Updates (``renew``, ``activity_seen``, ``update``,
``delete``), and the receiver sends ``push`` for a push to ``feature/<lane>`` (build the
commit, swap it into the lane, renew); the ``status`` query shows it. The resource
activities are generic (``create_lane_resource`` / ``delete_lane_resource``) and dispatch on
the resource kind.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from functools import partial

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.notify import NotifyActivities
    from schemas.durations import LANE_GRACE, LANE_TTL
    from schemas.lanes import (
        APP_RESOURCE_KINDS,
        CREATE_LANE_RESOURCE,
        DELETE_LANE_RESOURCE,
        RECORD_LANE,
        DeleteInput,
        DeleteResult,
        LaneActivityInput,
        LaneAppsInput,
        LanePushInput,
        LanePushResult,
        LaneRecordInput,
        LaneResourceInput,
        LaneSpec,
        LaneStage,
        LaneState,
        LaneStatus,
        LedgerEntry,
        RenewInput,
        ResourceKind,
        normalise_lane_name,
    )
    from schemas.models import NotifyInput
    from workflows import search, versioning
    from workflows.lane_steps import (
        GONE,
        HEARTBEAT_TIMEOUT,
        QUICK,
        RESOURCE_TIMEOUT,
        RETRY,
        UNTIL_DONE,
        deploy_push,
        resource_key,
    )
    from workflows.rollout import cause_of

MESSAGE_LANES_PATCH = "lane-messages"


class CreateFailed(Exception):
    """A create step failed; what the step's batch created is already torn down."""


# Why swimlane runs are auto-upgraded: workflows/versioning.py.
@workflow.defn(versioning_behavior=versioning.SWIMLANE)
class SwimlaneWorkflow:
    def __init__(self) -> None:
        self.state: LaneState | None = None
        # Create, update and teardown each change the ledger: one at a time.
        self._lock = asyncio.Lock()
        self._delete_by: str | None = None
        self._teardowns = 0  # finished teardown attempts, so waiting deletes know theirs ended
        self._touches = 0  # renewals seen, so the idle timer restarts
        self._removed: list[LedgerEntry] = []
        self._teardown_error = ""

    # -- the run ----------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: LaneSpec | LaneState) -> LaneStatus:
        """Create the lane (or resume a carried one), keep it while used, then tear it down."""
        if isinstance(start, LaneState):
            self.state = start  # continued as new: resources exist, the clock keeps running
        else:
            spec = start.model_copy(update={"name": normalise_lane_name(start.name)})
            try:  # started past the CLI with a bad value: fail visibly, not task after task
                LANE_TTL.check(spec.ttl_seconds)
                LANE_GRACE.check(spec.grace_seconds)
            except ValueError as refused:
                raise ApplicationError(f"lane {spec.name}: {refused}", type="InvalidLaneSpec",
                                       non_retryable=True) from None
            now = workflow.now()
            self.state = LaneState(spec=spec, last_activity=now,
                                   expires_at=now + self._lifetime(spec))
        workflow.upsert_search_attributes([search.LANE.value_set(self.state.spec.name)])
        self.set_stage(self.state.stage, "resumed" if isinstance(start, LaneState)
                       else f"creating apps {', '.join(self.state.spec.apps)}")
        if self.state.stage == LaneStage.CREATING:
            await self._record(self.state.spec.requested_by)
            await self._create()
        while True:
            if not await self._idle():
                # A delete arriving now must not be carried over unanswered: it wins.
                await workflow.wait_condition(
                    lambda: workflow.all_handlers_finished() or self._delete_by is not None)
                if self._delete_by is None:
                    workflow.continue_as_new(self.state)
            if await self._teardown():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.status()

    async def _create(self) -> None:
        """Create the namespace, then each app's resources; on failure undo exactly the ledger."""
        state = self._state
        try:
            async with self._lock:
                await self._create_resource(ResourceKind.NAMESPACE)
                # Lanes started before message lanes existed replay without this step.
                if workflow.patched(MESSAGE_LANES_PATCH):
                    await self._create_resource(ResourceKind.MESSAGES)
                for app in state.spec.apps:
                    await self._create_app(app)
        except CreateFailed as failure:
            self._delete_by = f"create failed: {failure}"
            self.set_stage(LaneStage.DELETING, self._delete_by)
            complete = await self._remove(list(state.ledger))
            self._teardowns += 1
            self.set_stage(LaneStage.FAILED, str(failure))
            await self._record()
            await workflow.wait_condition(workflow.all_handlers_finished)
            left = "" if complete else f"; teardown stopped: {self._teardown_error}"
            await self._notify(f"lane {state.spec.name} could not be created",
                               f"{failure}{left}")
            raise ApplicationError(f"lane {state.spec.name} could not be created: {failure}"
                                   f"{left}", type="LaneCreateFailed",
                                   non_retryable=True) from failure
        if self._delete_by is None:
            self._touch()
            self.set_stage(LaneStage.ACTIVE, f"{len(state.ledger)} resources created")
            await self._record()

    async def _create_app(self, app: str) -> None:
        for kind in APP_RESOURCE_KINDS:
            await self._create_resource(kind, app)

    async def _create_resource(self, kind: ResourceKind, app: str = "") -> None:
        """One resource, recorded in the ledger as soon as it exists.

        A delete requested meanwhile stops creation here: the step in flight finishes (so its
        resource is in the ledger) and the teardown takes everything from there.
        """
        state = self._state
        if self._delete_by is not None:
            return
        key = resource_key(kind, state.spec.name, app)
        try:
            entry: LedgerEntry = await workflow.execute_activity(
                CREATE_LANE_RESOURCE,
                LaneResourceInput(lane=state.spec.name, kind=kind, key=key, app=app,
                                  fail_closed=state.spec.fail_closed,
                                  messages=state.spec.messages),
                result_type=LedgerEntry, start_to_close_timeout=RESOURCE_TIMEOUT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=RETRY,
                summary=f"create {kind} {key}",
            )
        except ActivityError as error:
            raise CreateFailed(f"{kind} {key}: {cause_of(error)}") from error
        state.ledger.append(entry.model_copy(update={"app": entry.app or app}))

    async def _idle(self) -> bool:
        """Wait, on durable timers, until a delete or the TTL ends the lane (True) or
        Temporal suggests continuing as new (False)."""
        state = self._state
        while self._delete_by is None:
            if self._should_continue_as_new():
                return False
            touched = self._touches
            notice_at = state.last_activity + timedelta(seconds=state.spec.ttl_seconds)
            if state.stage == LaneStage.TEARDOWN_FAILED:
                deadline = None  # only another delete moves it on
            elif state.stage == LaneStage.PENDING_DELETION:
                deadline = state.expires_at
            else:
                deadline = notice_at
            timeout = None if deadline is None else deadline - workflow.now()
            if timeout is None or timeout > timedelta(0):
                try:
                    await workflow.wait_condition(partial(self._woken, touched), timeout=timeout)
                    continue
                except TimeoutError:
                    pass
            if state.stage == LaneStage.PENDING_DELETION:
                self._delete_by = f"ttl: idle since {state.last_activity.isoformat()}"
            elif state.stage == LaneStage.ACTIVE:
                await self._send_notice()
        return True

    async def _send_notice(self) -> None:
        state = self._state
        name = state.spec.name
        self.set_stage(LaneStage.PENDING_DELETION,
                       f"idle since {state.last_activity.isoformat()}")
        text = (f"Lane {name} has been idle for {timedelta(seconds=state.spec.ttl_seconds)} and "
                f"will be deleted at {state.expires_at.isoformat()}. Keep it with "
                f"`slipway lane renew {name}`")
        if state.spec.renew_url:
            text += f" or POST {state.spec.renew_url} with your API token"
        text += "."
        if state.spec.ticket:
            text += f" Ticket: {state.spec.ticket}."
        await self._notify(f"lane {name} will be deleted", text)
        state.notice_sent = True
        await self._record()

    async def _teardown(self) -> bool:
        """Remove the ledger, newest first; True when nothing is left."""
        state = self._state
        async with self._lock:
            self.set_stage(LaneStage.DELETING, f"requested by {self._delete_by}")
            complete = await self._remove(list(state.ledger))
            self._teardowns += 1
        if complete:
            self.set_stage(LaneStage.DELETED, f"{len(self._removed)} resources removed")
            await self._record(self._delete_by or "")
            await self._notify(f"lane {state.spec.name} deleted",
                               f"{len(self._removed)} resources removed ({self._delete_by})")
            return True
        self._delete_by = None  # a later delete re-runs the teardown from what is left
        self.set_stage(LaneStage.TEARDOWN_FAILED, self._teardown_error)
        await self._record()
        await self._notify(f"ALERT: lane {state.spec.name} teardown stopped",
                           f"{self._teardown_error}; run `slipway lane delete {state.spec.name}` "
                           "again once it is fixed")
        return False

    async def _remove(self, entries: list[LedgerEntry]) -> bool:
        """Delete ``entries`` newest first, dropping each from the ledger once it is gone.

        Stops at the first resource that cannot be deleted, so the ledger still names it.
        """
        state = self._state
        for entry in reversed(entries):
            try:
                # Idempotent (already gone is fine): retried until done, so an outage of a
                # few minutes delays a teardown instead of stranding half a lane.
                await workflow.execute_activity(
                    DELETE_LANE_RESOURCE, entry, start_to_close_timeout=RESOURCE_TIMEOUT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=UNTIL_DONE,
                    summary=f"delete {entry.kind} {entry.key}",
                )
            except ActivityError as error:
                self._teardown_error = f"delete {entry.kind} {entry.key}: {cause_of(error)}"
                return False
            state.ledger.remove(entry)
            self._removed.append(entry)
        return True

    # -- helpers ----------------------------------------------------------------------------

    @property
    def _state(self) -> LaneState:
        assert self.state is not None, "the lane state is set first thing in run()"
        return self.state

    @staticmethod
    def _lifetime(spec: LaneSpec) -> timedelta:
        return timedelta(seconds=spec.ttl_seconds + spec.grace_seconds)

    def _should_continue_as_new(self) -> bool:
        # Never in the middle of a ledger change: the carried state must be a settled one.
        return workflow.info().is_continue_as_new_suggested() and not self._lock.locked()

    def _entry(self, kind: ResourceKind, app: str) -> LedgerEntry | None:
        """The ledger entry of ``app``'s resource of ``kind``, if the lane has one."""
        return next((entry for entry in self._state.ledger
                     if entry.kind == kind and entry.app == app), None)

    def _woken(self, touched: int) -> bool:
        """Leave the idle wait: a delete, a renewal since ``touched``, or continue-as-new."""
        return (self._delete_by is not None or self._touches != touched
                or self._should_continue_as_new())

    def _touch(self) -> None:
        """The lane was used: restart the idle clock and take back a pending deletion."""
        state = self._state
        state.last_activity = workflow.now()
        state.expires_at = state.last_activity + self._lifetime(state.spec)
        state.notice_sent = False
        self._touches += 1
        if state.stage == LaneStage.PENDING_DELETION:
            self.set_stage(LaneStage.ACTIVE, "renewed")

    async def _record(self, actor: str = "") -> None:
        """Bring the lane's catalogue row up to date. Bookkeeping only: a catalogue that
        stays unreachable after the retries is logged, never a reason to fail the lane."""
        state = self._state
        spec = state.spec
        try:
            await workflow.execute_activity(
                RECORD_LANE, LaneRecordInput(
                    name=spec.name, workflow_id=workflow.info().workflow_id, apps=spec.apps,
                    stage=state.stage, expires_at=state.expires_at, ticket=spec.ticket,
                    description=spec.description, requested_by=spec.requested_by,
                    actor=actor),
                start_to_close_timeout=QUICK, retry_policy=RETRY,
                summary=f"record lane {state.stage}")
        except ActivityError as error:
            workflow.logger.warning("lane %s not recorded: %s", spec.name, cause_of(error))

    async def _notify(self, title: str, text: str) -> None:
        await workflow.execute_activity_method(
            NotifyActivities.notify, NotifyInput(title=title, text=text),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="notify",
        )

    def set_stage(self, stage: LaneStage, detail: str) -> None:
        self._state.stage = stage
        workflow.upsert_search_attributes([search.STAGE.value_set(str(stage))])
        workflow.set_current_details(f"**{stage}**: {detail}")

    # -- query and updates ------------------------------------------------------------------

    @workflow.query
    def status(self) -> LaneStatus:
        """Name, apps, stage, when it expires without a renew, and the ledger."""
        state = self._state
        return LaneStatus(name=state.spec.name, apps=list(state.spec.apps), stage=state.stage,
                          expires_at=state.expires_at, ledger=list(state.ledger),
                          last_activity=state.last_activity, notice_sent=state.notice_sent,
                          ticket=state.spec.ticket, description=state.spec.description)

    @workflow.update
    async def renew(self, data: RenewInput) -> LaneStatus:
        self._touch()
        await self._record(data.user)
        return self.status()

    @renew.validator
    def _validate_renew(self, data: RenewInput) -> None:
        self._check_alive("renew")

    @workflow.update
    async def activity_seen(self, data: LaneActivityInput) -> LaneStatus:
        """Something used the lane (a test run, a deploy from elsewhere): renews like ``renew``."""
        self._touch()
        await self._record(data.source)
        return self.status()

    @activity_seen.validator
    def _validate_activity_seen(self, data: LaneActivityInput) -> None:
        self._check_alive("record activity on")

    @workflow.update
    async def push(self, data: LanePushInput) -> LanePushResult:
        """A push to ``feature/<lane>``: build the commit, run it as the app's next lane
        version (the old one serves until the new one is ready), and renew the lane."""
        state = self._state
        name = state.spec.name
        # A tag-safe label: a sha's first 12 characters, or a branch name with "/" replaced.
        label = f"{name}-{re.sub(r'[^A-Za-z0-9_.-]', '-', data.sha[:12]) or 'worktree'}"
        async with self._lock:  # after create, an update or an earlier push
            if self._delete_by is not None or state.stage in GONE:
                raise ApplicationError(f"lane {name} is being deleted")
            current = self._entry(ResourceKind.DEPLOYMENT, data.app)
            if current is None:  # an update removed the app after this push was accepted
                raise ApplicationError(f"{data.app} is no longer in lane {name}")
            # With Jenkins set up, the lane has a job of its own for the app: build there.
            ci_job = self._entry(ResourceKind.CI_JOB, data.app)
            lane_job = str(ci_job.detail.get("job", "")) if ci_job else ""
            try:
                image, deployed = await deploy_push(name, current, data, label, lane_job)
            except ActivityError as error:
                what = data.sha[:12] or "the worktree"
                raise ApplicationError(f"deploying {what} of {data.app} into lane {name} "
                                       f"failed: {cause_of(error)}") from error
            state.ledger[state.ledger.index(current)] = deployed
        self._touch()
        await self._record(data.user)
        return LanePushResult(lane=name, app=data.app, sha=data.sha, image=image.run_ref,
                              url=str(deployed.detail.get("url", "")))

    @push.validator
    def _validate_push(self, data: LanePushInput) -> None:
        self._check_alive("deploy into")
        if data.app not in self._state.spec.apps:
            raise ValueError(f"{data.app} is not in lane {self._state.spec.name}: add it with "
                             f"`slipway lane update {self._state.spec.name} --add {data.app}`")
        if self._state.stage == LaneStage.CREATING:
            raise ValueError(f"lane {self._state.spec.name} is still being created: push again "
                             "once it is active")

    @workflow.update
    async def update(self, data: LaneAppsInput) -> LaneStatus:
        """Add or remove apps: only the difference is created or torn down."""
        state = self._state
        async with self._lock:  # after create (or another update) has finished
            if self._delete_by is not None or state.stage in GONE:
                raise ApplicationError(f"lane {state.spec.name} is being deleted")
            removed = [app for app in state.spec.apps if app in data.remove]
            doomed = [entry for entry in state.ledger if entry.app in removed]
            if not await self._remove(doomed):
                raise ApplicationError(f"removing {', '.join(removed)}: {self._teardown_error}")
            state.spec.apps = [app for app in state.spec.apps if app not in removed]
            for app in data.add:
                if app in state.spec.apps:
                    continue
                before = len(state.ledger)
                try:
                    await self._create_app(app)
                except CreateFailed as failure:
                    # Undo this app only; apps added before it in this update stay.
                    await self._remove(state.ledger[before:])
                    raise ApplicationError(f"adding {app}: {failure}") from failure
                state.spec.apps.append(app)
        self._touch()
        await self._record(data.user)
        return self.status()

    @update.validator
    def _validate_update(self, data: LaneAppsInput) -> None:
        self._check_alive("update")
        apps = self._state.spec.apps
        if not data.add and not data.remove:
            raise ValueError("nothing to change: give apps to add or remove")
        if both := set(data.add) & set(data.remove):
            raise ValueError(f"both added and removed: {', '.join(sorted(both))}")
        if present := [app for app in data.add if app in apps]:
            raise ValueError(f"already in lane {self._state.spec.name}: {', '.join(present)}")
        if absent := [app for app in data.remove if app not in apps]:
            raise ValueError(f"not in lane {self._state.spec.name}: {', '.join(absent)}")
        if not set(apps) - set(data.remove) and not data.add:
            raise ValueError("a lane keeps at least one app: delete the lane instead")

    @workflow.update
    async def delete(self, data: DeleteInput) -> DeleteResult:
        """Tear the lane down and return once done; safe to send again, or during create."""
        state = self._state
        if state.stage not in (LaneStage.DELETED, LaneStage.FAILED):
            round_ = self._teardowns
            if self._delete_by is None:
                self._delete_by = data.user
            # The run loop does the teardown (after create's step in flight, if any).
            await workflow.wait_condition(lambda: self._teardowns > round_)
            if state.stage == LaneStage.TEARDOWN_FAILED:
                raise ApplicationError(f"lane {state.spec.name} teardown stopped: "
                                       f"{self._teardown_error}; send delete again")
        return DeleteResult(name=state.spec.name, removed=list(self._removed))

    def _check_alive(self, what: str) -> None:
        state = self._state
        if self._delete_by is not None or state.stage in GONE:
            raise ValueError(f"cannot {what} lane {state.spec.name}: it is {state.stage}")
