"""Recorded fake activities for ReleaseWorkflow tests on the time-skipping server."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.support import Relay, WorkflowSignals
from catalogue.approvals import check_approval
from catalogue.store import Store
from catalogue.tokens import ROLES
from integrations.notify.links import ApprovalLinks
from schemas.analysis import (
    AnalysisPolicy,
    CheckPolicyInput,
    MeasureInput,
    Measurement,
    MeasureResult,
    Reading,
    Verdict,
)
from schemas.approvals import (
    ApprovalSubject,
    Decision,
    Door,
    TokenKey,
    release_subject,
    sign_proof,
    train_subject,
    verify_proof,
)
from schemas.enums import ReleaseState, Strategy
from schemas.freezes import FreezeCheckInput, FreezeRule, FreezeVerdict, gate
from schemas.models import (
    PROBE_SIGNAL,
    ApprovalInput,
    ApprovalVerdict,
    BuildInput,
    DrainInput,
    EnsureFrontendInput,
    FinishReleaseInput,
    FinishReleaseResult,
    HealthCheckInput,
    ImageSpec,
    Instance,
    ListVersionsInput,
    NoteApprovalInput,
    NotifyInput,
    PrepareReleaseInput,
    RecordBuildInput,
    ReleasePlan,
    ReleaseRequest,
    ResolveImageInput,
    StartVersionInput,
    TrafficInput,
    VerifyApprovalInput,
    VersionRef,
    WaitReadyInput,
    WatchHealthInput,
)
from schemas.trains import FinishTrainInput, PrepareTrainInput, TrainMemberPlan, TrainPlan
from starter.service.tokens import hash_token
from tests.support.workers import workers
from workflows.release import ReleaseWorkflow
from workflows.train import TrainWorkflow

# Every approver of the fake worlds has a token (the clear values only tests know).
TOKENS = {user: f"slw_test_{user}" for user in ("lead", "ana", "bob", "mallory", "sre")}
# The approval signing secret of the fake worlds (the worker's, the receiver's, the CLI's).
SIGNING_SECRET = "test-approval-signing-secret"


@dataclass
class Bound:
    """What a workflow's approval is bound to, as the fake activities saw it: its run, and
    (a release) its change and target image, (a train) the whole subject."""

    run_id: str
    change_id: int | None = None
    image: ImageSpec | None = None
    subject: ApprovalSubject | None = None


# Workflow id → what its latest run's approval is bound to (filled in by the fakes).
BOUND: dict[str, Bound] = {}


def subject_of(workflow_id: str) -> ApprovalSubject:
    """The subject the workflow ``workflow_id`` (its latest run) asks approval for: what
    ``status.approval`` says once it waits, computed as the workflow computes it."""
    bound = BOUND.get(workflow_id, Bound(run_id=""))
    if bound.subject is not None:
        return bound.subject
    image = bound.image or ImageSpec(image="")
    return release_subject(workflow_id, bound.run_id, image.image, image.digest,
                           bound.change_id)


def signed(handle: WorkflowHandle[Any, Any], user: str, decision: Decision = "approve",
           comment: str = "", token: str | None = None, via: Door = "cli",
           secret: str = SIGNING_SECRET) -> ApprovalInput:
    """An approval (or rejection) of ``handle``'s release (or train) by ``user``, with a proof
    for the run waiting now and what it carries, signed by ``token`` (default: the user's own
    test token) and ``secret``."""
    proof = sign_proof(secret, hash_token(token or TOKENS[user]), user, subject_of(handle.id),
                       decision, via, time.time())
    return ApprovalInput(user=user, comment=comment, proof=proof)


@dataclass
class FakeWorld:
    """Activities that record what they were asked to do, with switchable failures."""

    current_version: int = 0
    versions: list[int] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    finished: list[FinishReleaseInput] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    fail_ready_for: int | None = None
    block_ready_for: int | None = None
    fail_undo: bool = False
    fail_remove_for: int | None = None  # remove_version of this version fails for good
    ready_started: asyncio.Event = field(default_factory=asyncio.Event)
    unblock: asyncio.Event = field(default_factory=asyncio.Event)
    strategy: Strategy = Strategy.RECREATE
    replicas: int = 2
    gray_steps: list[str] = field(default_factory=lambda: ["1", "50%", "100%"])
    stable_seconds: int = 0
    approval_required: bool = False
    approvers: list[str] = field(default_factory=lambda: ["lead", "ana"])
    unhealthy_version: int | None = None
    health_checks: int = 0
    approvals: list[str] = field(default_factory=list)
    block_start_for: int | None = None  # start_version of this version is held (see _hold)
    block_remove_for: int | None = None
    flaky_route_for: int | None = None  # add_to_lb of this version fails (retryably) …
    flaky_times: int = 0  # … this many times; finish_release too when flaky_finish
    flaky_finish: bool = False
    # Stable-wait windows end at once (probes counted as if time passed) unless held: then
    # the watch runs until the workflow stops it (promote, pause, abort).
    hold_stable: bool = False
    # Approval proofs are checked against this catalogue's tokens when set, else against
    # TOKENS (user → clear token, every role).
    store: Store | None = None
    # Canary analysis: the policy the plan carries, the verdict of each measurement in turn
    # (the last repeats), and a reason check_analysis refuses the policy with.
    analysis: AnalysisPolicy | None = None
    verdicts: list[Verdict] = field(default_factory=lambda: [Verdict.PASSED])
    # When set, what the provider reads instead (in turn, the last repeats), judged by the
    # policy's own Metric.judge as the real activity does.
    readings: list[Reading] | None = None
    bad_policy: str = ""
    measured: list[MeasureInput] = field(default_factory=list)
    fast_rollback: bool = False
    # A rollback to a baseline is to a recent one (prepare's verdict); an older one needs
    # approval whatever the policy.
    rollback_recent: bool = True
    # Freezes and deploy windows check_freeze judges by (at the server's, possibly skipped,
    # time); the times each rollout activity was scheduled at.
    freezes: list[FreezeRule] = field(default_factory=list)
    # The approval signing secret verify_approval checks proofs with; approval links: the
    # maker the fake notifier uses (as the real notify activity does); messages keeps title
    # and text.
    signing_secret: str = SIGNING_SECRET
    links: ApprovalLinks | None = None
    messages: list[str] = field(default_factory=list)
    # Release trains: apps whose new version fails its health checks, and closed trains.
    unhealthy_apps: set[str] = field(default_factory=set)
    block_ready_apps: set[str] = field(default_factory=set)  # their new version is held
    trains: list[FinishTrainInput] = field(default_factory=list)
    scheduled: dict[str, datetime] = field(default_factory=dict)
    # What a held activity's heartbeats say, in the shape activities/support.py's Pulse
    # heartbeats (the test may change it while the hold lasts); nothing when empty.
    hold_detail: str = ""

    async def hold(self, what: str, relay: Relay | None = None) -> None:
        """Block until the test lets go, heartbeating as the real activities do (that is how
        a cancel reaches an activity); a cancelled hold takes a moment to clean up, then
        records ``<what> cancelled``. With ``relay``, what the heartbeat says is also
        signalled to the workflow, as the real waiting activities do."""
        self.ready_started.set()
        try:
            while not self.unblock.is_set():
                if self.hold_detail:
                    activity.heartbeat({"message": self.hold_detail, "checkpoint": {}})
                    if relay is not None:
                        relay.offer(self.hold_detail)
                else:
                    activity.heartbeat()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.unblock.wait(), timeout=0.2)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)
            self.calls.append(f"{what} cancelled")
            raise

    def flake(self, what: str) -> None:
        """Fail retryably the first ``flaky_times`` attempts of the running activity."""
        if activity.info().attempt <= self.flaky_times:
            raise ApplicationError(f"{what}: store unavailable")

    def sick(self, version: VersionRef) -> bool:
        return version.app in self.unhealthy_apps and version.version > self.current_version

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name="prepare_train")
        async def prepare_train(data: PrepareTrainInput) -> TrainPlan:
            world.calls.append(f"prepare train {data.request.name}")
            env = "prod@local"
            plan = TrainPlan(train_id=3, approval_required=world.approval_required,
                             approvers=world.approvers, members=[
                                 TrainMemberPlan(app=m.app, env=env,
                                                 from_version=world.current_version,
                                                 workflow_id=f"release:{m.app}:{env}")
                                 for m in data.request.members])
            BOUND[data.workflow_id] = Bound(run_id=data.run_id, subject=train_subject(
                data.workflow_id, data.run_id, plan.train_id,
                [f"{m.app}@{m.env}" for m in plan.members]))
            return plan

        @activity.defn(name="finish_train")
        async def finish_train(data: FinishTrainInput) -> int:
            world.trains.append(data)
            return data.train_id

        @activity.defn(name="prepare_release")
        async def prepare_release(data: PrepareReleaseInput) -> ReleasePlan:
            world.calls.append("prepare")
            current = world.current_version
            target = ImageSpec(image=data.request.image) if data.request.image else None
            if data.request.rollback_to is not None:
                target = ImageSpec(image=f"slipway/shop:v{data.request.rollback_to}",
                                   digest=f"sha256:v{data.request.rollback_to}")
            BOUND[data.workflow_id] = Bound(run_id=data.run_id, change_id=data.request.change_id,
                                            image=target if target and target.digest else None)
            return ReleasePlan(
                release_id=7, app=data.request.app, env=data.request.env, env_key="shop-prod",
                lb_port=18080, cluster="local", strategy=world.strategy,
                replicas=world.replicas, ports=[8080], source="/src/shop",
                from_version=current, to_version=current + 1,
                current=ImageSpec(image="slipway/shop:v1", digest="sha256:v1") if current else None,
                current_replicas=world.replicas if current else 0,
                target=target, gray_steps=world.gray_steps, stable_seconds=world.stable_seconds,
                approval_required=((world.approval_required and data.request.train_id is None)
                                   or bool(data.request.break_glass)
                                   or (data.request.rollback_to is not None
                                       and not world.rollback_recent)),
                approvers=world.approvers,
                requested_by=data.request.requested_by, rollback_to=data.request.rollback_to,
                approval_timeout_seconds=86400,
                analysis=None if data.request.rollback_to is not None else world.analysis,
                analysis_skipped=(f"a rollback to baseline {data.request.rollback_to} returns "
                                  "to a version judged before"
                                  if data.request.rollback_to is not None
                                  and world.analysis is not None else ""),
                fast_rollback=(world.fast_rollback and data.request.rollback_to is not None
                               and world.rollback_recent),
                rollback_recent=data.request.rollback_to is not None and world.rollback_recent,
                break_glass=data.request.break_glass, no_wait=data.request.no_wait,
            )

        @activity.defn(name="build_image")
        async def build_image(data: BuildInput) -> ImageSpec:
            world.calls.append(f"build {data.version_label}")
            built = ImageSpec(image=f"slipway/{data.app}:{data.version_label}",
                              digest="sha256:new")
            BOUND.setdefault(activity.info().workflow_id or "", Bound(run_id="")).image = built
            return built

        @activity.defn(name="record_build")
        async def record_build(data: RecordBuildInput) -> int:
            world.calls.append("record_build")
            return 1

        @activity.defn(name="resolve_image")
        async def resolve_image(data: ResolveImageInput) -> ImageSpec:
            world.calls.append(f"resolve {data.image}")
            resolved = ImageSpec(image=data.image, digest="sha256:given")
            BOUND.setdefault(activity.info().workflow_id or "", Bound(run_id="")).image = resolved
            return resolved

        @activity.defn(name="ensure_frontend")
        async def ensure_frontend(data: EnsureFrontendInput) -> None:
            world.calls.append(f"frontend {data.lb_port}")

        @activity.defn(name="list_versions")
        async def list_versions(data: ListVersionsInput) -> list[int]:
            return list(world.versions)

        @activity.defn(name="drain")
        async def drain(data: DrainInput) -> None:
            world.calls.append(f"drain v{data.version}" + (f" keep {data.keep}"
                                                          if data.keep else ""))

        @activity.defn(name="check_health")
        async def check_health(data: HealthCheckInput) -> list[str]:
            world.health_checks += 1
            if data.version.version == world.unhealthy_version or world.sick(data.version):
                return [f"v{data.version.version}-0 failed /healthz"]
            return []

        @activity.defn(name="watch_health")
        async def watch_health(data: WatchHealthInput) -> list[str]:
            if data.check.version.version == world.unhealthy_version or world.sick(
                    data.check.version):
                world.health_checks += 1
                return [f"v{data.check.version.version}-0 failed /healthz"]
            while world.hold_stable:
                activity.heartbeat()  # a cancel arrives with a heartbeat's answer
                await asyncio.sleep(0.1)
            world.health_checks += int(data.seconds // data.interval_seconds)
            return []

        @activity.defn(name="note_approval")
        async def note_approval(data: NoteApprovalInput) -> None:
            world.approvals.append(data.approver or "awaiting")

        @activity.defn(name="remove_from_lb")
        async def remove_from_lb(data: DrainInput) -> None:
            world.calls.append(f"unroute v{data.version}")

        @activity.defn(name="add_to_lb")
        async def add_to_lb(data: TrafficInput) -> None:
            if data.instances and data.instances[0].version == world.flaky_route_for:
                world.flake("haproxy")
            if world.fail_undo and data.instances[0].version == world.current_version:
                raise ApplicationError("haproxy socket gone", non_retryable=True)
            world.calls.append("route " + ",".join(i.name for i in data.instances))

        @activity.defn(name="stop_version")
        async def stop_version(data: VersionRef) -> None:
            world.calls.append(f"stop v{data.version}")

        @activity.defn(name="remove_version")
        async def remove_version(data: VersionRef) -> None:
            if data.version == world.block_remove_for:
                await world.hold(f"remove v{data.version}")
            if data.version == world.fail_remove_for:
                world.calls.append(f"remove v{data.version} failed")
                raise ApplicationError(f"dockerd refused to remove v{data.version}",
                                       non_retryable=True)
            world.calls.append(f"remove v{data.version}")

        @activity.defn(name="start_version")
        async def start_version(data: StartVersionInput) -> None:
            if data.version.version == world.block_start_for:
                world.block_start_for = None  # only the first start is held
                await world.hold(f"start v{data.version.version}")
            world.calls.append(f"start v{data.version.version} {data.image} x{data.replicas}")
            world.scheduled.setdefault(f"start v{data.version.version}",
                                       activity.info().current_attempt_scheduled_time)

        @activity.defn(name="wait_ready")
        async def wait_ready(data: WaitReadyInput) -> list[Instance]:
            version = data.version.version
            if version == world.block_ready_for or (
                    data.version.app in world.block_ready_apps and version > world.current_version):
                world.ready_started.set()
                # Held until the test lets go: an activity still running when the worker
                # stops would keep the time-skipping server from skipping in later tests.
                relay = Relay(WorkflowSignals(activity.client(), asyncio.get_running_loop())
                              .to_workflow(PROBE_SIGNAL), "wait_ready", version,
                              every=0) if data.report else None
                await world.hold(f"ready v{version}", relay)
                return []
            if world.sick(data.version):
                raise ApplicationError(f"{data.version.app} v{version}-0 failed /healthz",
                                       type="NotReadyError", non_retryable=True)
            if version == world.fail_ready_for:
                raise ApplicationError("v2-0 exited: boom", type="NotReadyError",
                                       non_retryable=True)
            world.calls.append(f"ready v{version}")
            return [Instance(name=f"v{version}-{i}", version=version, address="127.0.0.1",
                             port=30000 + i) for i in range(data.replicas)]

        @activity.defn(name="finish_release")
        async def finish_release(data: FinishReleaseInput) -> FinishReleaseResult:
            if world.flaky_finish:
                world.flake("finish")
            world.finished.append(data)
            ok = data.state == ReleaseState.SUCCEEDED
            return FinishReleaseResult(baseline_version=world.current_version + 1 if ok else None)

        @activity.defn(name="notify")
        async def notify(data: NotifyInput) -> None:
            world.notices.append(data.title)
            links = (world.links.markdown(data.links)
                     if world.links is not None and data.links is not None else "")
            world.messages.append(f"{data.title}\n{data.text}{links}")

        @activity.defn(name="verify_approval")
        async def verify_approval(data: VerifyApprovalInput) -> ApprovalVerdict:
            info = activity.info()
            if world.store is not None:  # the real check, on a real catalogue
                return check_approval(world.store, data, time.time(), world.signing_secret,
                                      used_by=f"{info.workflow_id}/{info.workflow_run_id}/"
                                              f"{info.activity_id}")
            keys = [TokenKey(user, user, hash_token(token), frozenset(ROLES))
                    for user, token in TOKENS.items()]
            decision: Decision = "reject" if data.decision == "reject" else "approve"
            if data.subject is None:
                return ApprovalVerdict(ok=False, reason="no subject")
            check = verify_proof(data.proof, data.user, data.subject, decision, time.time(),
                                 keys, set(data.used_nonces), world.signing_secret)
            return ApprovalVerdict(ok=check.ok, reason=check.reason, via=check.via,
                                   token=check.token, nonce=check.nonce)

        @activity.defn(name="measure_analysis")
        async def measure_analysis(data: MeasureInput) -> MeasureResult:
            world.measured.append(data)
            measurements = []
            for name in data.metrics:
                taken = sum(len(m.metrics) for m in world.measured) - 1
                metric = data.policy.metric(name)
                if world.readings is not None:
                    reading = world.readings[min(taken, len(world.readings) - 1)]
                    verdict, detail = metric.judge(reading)
                    measurements.append(Measurement(
                        metric=name, mode=metric.mode, step=data.step, at=datetime.now(UTC),
                        value=reading.value, baseline=reading.baseline, sample=reading.sample,
                        condition=metric.condition_text(), verdict=verdict, detail=detail))
                    continue
                verdict = world.verdicts[min(taken, len(world.verdicts) - 1)]
                measurements.append(Measurement(
                    metric=name, mode=metric.mode, step=data.step, at=datetime.now(UTC),
                    value=0.1 if verdict == Verdict.FAILED else 0.0, sample=100,
                    condition=metric.condition_text(), verdict=verdict, detail=str(verdict)))
            return MeasureResult(measurements=measurements, counters={"2": [100.0, 0.0]})

        @activity.defn(name="check_freeze")
        async def check_freeze(data: FreezeCheckInput) -> FreezeVerdict:
            env_type, _, cluster = data.env.partition("@")
            return gate(world.freezes, env_type, cluster,
                        activity.info().current_attempt_scheduled_time)

        @activity.defn(name="check_analysis")
        async def check_analysis(data: CheckPolicyInput) -> None:
            world.calls.append("check analysis")
            if world.bad_policy:
                raise ApplicationError(f"bad analysis policy: {world.bad_policy}",
                                       type="BadAnalysisPolicy", non_retryable=True)

        return [prepare_train, finish_train, check_freeze, measure_analysis, check_analysis,
                prepare_release, build_image, record_build,
                resolve_image, ensure_frontend,
                list_versions, drain, remove_from_lb, add_to_lb, stop_version, remove_version,
                start_version, wait_ready, finish_release, notify, check_health,
                note_approval, watch_health, verify_approval]


async def run_release(env: WorkflowEnvironment, world: FakeWorld, request: ReleaseRequest,
                      cancel_when_blocked: bool = False) -> Any:
    queue = f"q-{uuid.uuid4()}"
    async with workers(env.client, queue, [ReleaseWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, request, id=f"release:{request.app}:{uuid.uuid4()}",
            task_queue=queue,
        )
        if cancel_when_blocked:
            await asyncio.wait_for(world.ready_started.wait(), timeout=30)
            await handle.cancel()
        try:
            outcome = await handle.result()
        finally:
            world.unblock.set()
        # Queries need a worker: ask for the final status before it stops.
        return await handle.query(ReleaseWorkflow.status), outcome


async def start(env: WorkflowEnvironment, world: FakeWorld, request: ReleaseRequest,
                queue: str) -> WorkflowHandle[Any, Any]:
    return await env.client.start_workflow(
        ReleaseWorkflow.run, request, id=f"release:{request.app}:{uuid.uuid4()}",
        task_queue=queue,
    )


def worker(env: WorkflowEnvironment,
           world: FakeWorld) -> tuple[AbstractAsyncContextManager[None], str]:
    queue = f"q-{uuid.uuid4()}"
    # As worker.py: heartbeats reach the server within 1 s, so a cancel reaches the activity.
    return workers(env.client, queue, [ReleaseWorkflow, TrainWorkflow], world.activities(),
                   max_heartbeat_throttle_interval=timedelta(seconds=1)), queue


async def wait_for(handle: WorkflowHandle[Any, Any], predicate: Any, seconds: float = 30) -> Any:
    """Poll the status query until ``predicate(status)`` holds (real time, bounded)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        status = await handle.query(ReleaseWorkflow.status)
        if predicate(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"status never matched: {status}")
        await asyncio.sleep(0.05)
