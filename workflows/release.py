"""ReleaseWorkflow: one release (发布单) of an application on one environment.

prepare → build or resolve the image → roll out (recreate: drain old → stop old → start new
→ wait ready → put new in rotation) → write baseline N+1. Any failure or a cancellation
undoes what was done, newest first, so the environment ends on its recorded baseline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.catalogue import CatalogueActivities
    from activities.notify import NotifyActivities
    from activities.runtime import RuntimeActivities
    from activities.traffic import TrafficActivities
    from schemas.enums import ReleaseState
    from schemas.models import (
        BuildInput,
        DrainInput,
        EnsureFrontendInput,
        FinishReleaseInput,
        ImageSpec,
        ListVersionsInput,
        NotifyInput,
        PrepareReleaseInput,
        RecordBuildInput,
        ReleaseEvent,
        ReleaseOutcome,
        ReleasePlan,
        ReleaseRequest,
        ReleaseStatus,
        ResolveImageInput,
        StartVersionInput,
        TrafficInput,
        VersionRef,
        WaitReadyInput,
    )
    from workflows import search

QUICK = timedelta(seconds=60)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                    maximum_attempts=5)
BUILD_TIMEOUT = timedelta(minutes=30)

Undo = Callable[[], Awaitable[None]]


def release_workflow_id(app: str, env: str) -> str:
    """At most one release per environment: the id is the environment's."""
    return f"release:{app}:{env}"


def _cause(error: BaseException) -> str:
    while isinstance(error, ActivityError) and error.cause is not None:
        error = error.cause
    return getattr(error, "message", None) or str(error) or type(error).__name__


def _is_cancellation(error: BaseException) -> bool:
    """A cancel request reaches the workflow either directly or through the awaited activity."""
    return isinstance(error, asyncio.CancelledError) or (
        isinstance(error, ActivityError) and isinstance(error.cause, CancelledError)
    )


@workflow.defn
class ReleaseWorkflow:
    def __init__(self) -> None:
        self._status = ReleaseStatus(app="", env="", stage="pending")
        self._undo: list[tuple[str, Undo]] = []

    @workflow.query
    def status(self) -> ReleaseStatus:
        """Where the release is and what it did so far."""
        return self._status

    @workflow.run
    async def run(self, request: ReleaseRequest) -> ReleaseOutcome:
        info = workflow.info()
        self._status = ReleaseStatus(app=request.app, env=request.env, stage="preparing")
        plan: ReleasePlan = await workflow.execute_activity_method(
            CatalogueActivities.prepare_release,
            PrepareReleaseInput(request=request, workflow_id=info.workflow_id,
                                run_id=info.run_id),
            start_to_close_timeout=QUICK, retry_policy=RETRY,
            summary="load application, environment and baseline",
        )
        self._status.from_version, self._status.to_version = plan.from_version, plan.to_version
        try:
            target = await self._target_image(plan, request)
            self._status.image = target.image
            await self._notify(f"release {plan.app}@{plan.env} v{plan.to_version}",
                               f"rolling out {target.image}")
            await self._recreate(plan, target)
        except (ActivityError, ApplicationError, asyncio.CancelledError) as error:
            state, reason = await self._give_up(plan, error)
            if _is_cancellation(error):
                raise asyncio.CancelledError(reason) from error
            raise ApplicationError(f"release {state}: {reason}", type=f"Release_{state}",
                                   non_retryable=True) from error
        result = await workflow.execute_activity_method(
            CatalogueActivities.finish_release,
            FinishReleaseInput(release_id=plan.release_id, state=ReleaseState.SUCCEEDED,
                               image=target),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="write the baseline",
        )
        self._set_stage("succeeded", f"baseline v{result.baseline_version} written")
        await self._notify(f"release {plan.app}@{plan.env} succeeded",
                           f"baseline v{result.baseline_version}: {target.image}")
        return ReleaseOutcome(state=ReleaseState.SUCCEEDED, app=plan.app, env=plan.env,
                              baseline_version=result.baseline_version, image=target.image,
                              digest=target.digest)

    async def _target_image(self, plan: ReleasePlan, request: ReleaseRequest) -> ImageSpec:
        if plan.target is not None:
            self._set_stage("resolving", f"checking image {plan.target.image}")
            return await workflow.execute_activity_method(
                RuntimeActivities.resolve_image, ResolveImageInput(image=plan.target.image),
                start_to_close_timeout=timedelta(minutes=10), retry_policy=RETRY,
                summary=f"resolve {plan.target.image}",
            )
        label = request.version_label or f"v{plan.to_version}"
        self._set_stage("building", f"building {plan.app} {label} from {plan.source}")
        image = await workflow.execute_activity_method(
            BuildActivities.build_image,
            BuildInput(app=plan.app, source=plan.source, ref=request.ref, version_label=label,
                       workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=BUILD_TIMEOUT, heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRY, summary=f"build {plan.app}:{label}",
        )
        await workflow.execute_activity_method(
            CatalogueActivities.record_build,
            RecordBuildInput(app=plan.app, ref=request.ref, version_label=label, image=image,
                             workflow_id=workflow.info().workflow_id),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="record the build",
        )
        return image

    async def _recreate(self, plan: ReleasePlan, target: ImageSpec) -> None:
        """Drain all old instances → stop them → start the new version → enable it."""
        await self._act(TrafficActivities.ensure_frontend,
                        EnsureFrontendInput(env_key=plan.env_key, lb_port=plan.lb_port,
                                            health_path=plan.health_path),
                        f"load balancer on port {plan.lb_port}")
        versions: list[int] = await self._act(
            RuntimeActivities.list_versions,
            ListVersionsInput(app=plan.app, env_key=plan.env_key, cluster=plan.cluster),
            "list running versions",
        )
        old = [v for v in versions if v != plan.to_version]
        if plan.current is not None and plan.from_version:
            current = plan.current
            self._undo.append((f"restore v{plan.from_version}",
                               lambda: self._bring_up(plan, plan.from_version, current,
                                                      plan.current_replicas)))
        drain_timeout = timedelta(seconds=plan.drain_timeout_seconds)
        for version in old:
            self._set_stage("draining", f"draining v{version}")
            await self._act(TrafficActivities.drain,
                            DrainInput(env_key=plan.env_key, version=version,
                                       timeout_seconds=plan.drain_timeout_seconds),
                            f"drain v{version}", timeout=drain_timeout + QUICK)
            await self._act(RuntimeActivities.stop_version, self._ref(plan, version),
                            f"stop v{version}", timeout=timedelta(minutes=5))
        self._undo.append((f"remove v{plan.to_version}",
                           lambda: self._tear_down(plan, plan.to_version)))
        self._set_stage("starting", f"starting {plan.replicas} replicas of v{plan.to_version}")
        await self._bring_up(plan, plan.to_version, target, plan.replicas)
        # The new version serves: there is nothing left to undo, only old containers to clear.
        self._undo.clear()
        for version in old:
            try:
                await self._act(RuntimeActivities.remove_version, self._ref(plan, version),
                                f"remove v{version}")
            except ActivityError as error:
                self._event(f"could not remove v{version}: {_cause(error)}")

    async def _bring_up(self, plan: ReleasePlan, version: int, image: ImageSpec,
                        replicas: int) -> None:
        """Start a version, wait until it is healthy, then put it in rotation."""
        ref = self._ref(plan, version)
        await self._act(RuntimeActivities.start_version,
                        StartVersionInput(version=ref, image=image.run_ref, replicas=replicas,
                                          ports=plan.ports, env_vars=plan.env_vars,
                                          cpu=plan.cpu, memory=plan.memory),
                        f"start {replicas}× v{version}", timeout=timedelta(minutes=10))
        instances = await self._act(
            RuntimeActivities.wait_ready,
            WaitReadyInput(version=ref, replicas=replicas, port=plan.ports[0],
                           health_path=plan.health_path,
                           deadline_seconds=plan.progress_deadline_seconds),
            f"wait until v{version} is healthy",
            timeout=timedelta(seconds=plan.progress_deadline_seconds) + QUICK,
            heartbeat=True,
        )
        await self._act(TrafficActivities.add_to_lb,
                        TrafficInput(env_key=plan.env_key, instances=instances),
                        f"put v{version} in rotation")

    async def _tear_down(self, plan: ReleasePlan, version: int) -> None:
        await self._act(TrafficActivities.remove_from_lb,
                        DrainInput(env_key=plan.env_key, version=version, timeout_seconds=0),
                        f"take v{version} out of rotation")
        await self._act(RuntimeActivities.remove_version, self._ref(plan, version),
                        f"remove v{version}")

    async def _give_up(self, plan: ReleasePlan,
                       error: BaseException) -> tuple[ReleaseState, str]:
        """Undo what was done, newest first, and close the release as rolled back or failed."""
        reason = "cancelled" if _is_cancellation(error) else _cause(error)
        self._set_stage("rolling_back", f"undoing: {reason}")
        undo_failed = ""
        for what, undo in reversed(self._undo):
            try:
                # Shielded: a cancelled release must still finish putting things back.
                await asyncio.shield(asyncio.ensure_future(undo()))
                self._event(f"undone: {what}")
            except (ActivityError, ApplicationError) as undo_error:
                undo_failed = f"{what} failed: {_cause(undo_error)}"
                self._event(f"undo {undo_failed}")
                break
        state = ReleaseState.FAILED if undo_failed else ReleaseState.ROLLED_BACK
        await workflow.execute_activity_method(
            CatalogueActivities.finish_release,
            FinishReleaseInput(release_id=plan.release_id, state=state,
                               error=f"{reason}; {undo_failed}" if undo_failed else reason),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary=f"record {state}",
        )
        self._set_stage(str(state), reason)
        title = f"release {plan.app}@{plan.env} {state}"
        await self._notify(("ALERT: " if undo_failed else "") + title, undo_failed or reason)
        return state, reason

    async def _act(self, method: Any, arg: Any, summary: str,
                   timeout: timedelta = QUICK, heartbeat: bool = False) -> Any:
        return await workflow.execute_activity_method(
            method, arg, start_to_close_timeout=timeout, retry_policy=RETRY, summary=summary,
            heartbeat_timeout=timedelta(seconds=60) if heartbeat else None,
        )

    async def _notify(self, title: str, text: str) -> None:
        await workflow.execute_activity_method(
            NotifyActivities.notify, NotifyInput(title=title, text=text),
            start_to_close_timeout=QUICK, retry_policy=RETRY, summary="notify",
        )

    @staticmethod
    def _ref(plan: ReleasePlan, version: int) -> VersionRef:
        return VersionRef(app=plan.app, env_key=plan.env_key, cluster=plan.cluster,
                          version=version)

    def _set_stage(self, stage: str, detail: str) -> None:
        self._status.stage = stage
        workflow.upsert_search_attributes([search.STAGE.value_set(stage)])
        workflow.set_current_details(f"**{stage}**: {detail}")
        self._event(f"{stage}: {detail}")

    def _event(self, message: str) -> None:
        self._status.events.append(ReleaseEvent(at=workflow.now(), message=message))
