"""Release bookkeeping in the catalogue: open a release (发布单), note approval, close it, and
write the baseline.

Every operation is idempotent, keyed by the workflow run or the release id, so an activity
retry never writes a second release row or a second baseline.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from catalogue.analysis import policy_of
from catalogue.holds import check_not_held, hold_after_rollback
from catalogue.hosts import agent_hosts
from catalogue.rejections import check_not_rejected, check_ref_not_rejected, reject_target
from catalogue.store import (
    CatalogueError,
    Store,
    as_utc,
    audit,
    find_app,
    find_env,
    latest_baseline,
)
from catalogue.tables import Application, Baseline, Change, Environment, Release, utcnow
from schemas.enums import (
    UNRELEASABLE_APP_STATES,
    ApprovalPolicy,
    AppState,
    AppTier,
    ChangeState,
    ReleaseState,
    Strategy,
)
from schemas.identities import same_person
from schemas.models import (
    FinishReleaseInput,
    FinishReleaseResult,
    ImageSpec,
    NoteApprovalInput,
    PrepareReleaseInput,
    ReleasePlan,
    ReleaseRequest,
)
from schemas.settings import Settings

# Where a change goes when its release ends without running (seed 004: 驳回后状态变为开发中).
CHANGE_AFTER = {
    ReleaseState.SUCCEEDED: ChangeState.RELEASED,
    ReleaseState.REJECTED: ChangeState.DEVELOPING,
    ReleaseState.APPROVAL_EXPIRED: ChangeState.DEVELOPING,
    ReleaseState.ROLLED_BACK: ChangeState.FAILED,
    ReleaseState.FAILED: ChangeState.FAILED,
}


def env_key(app: str, env_type: str, cluster: str) -> str:
    """A name safe for containers, files and load-balancer keys: ``shop-prod-local``."""
    return re.sub(r"[^a-z0-9-]+", "-", f"{app}-{env_type}-{cluster}".lower()).strip("-")


def check_releasable(app: Application) -> None:
    if app.state in UNRELEASABLE_APP_STATES:
        hint = (
            f"mark it reviewed with `slipway app ready {app.name}`"
            if app.state == AppState.PENDING_REVIEW
            else "an offline application is never released again"
        )
        raise CatalogueError(f"application {app.name!r} is {app.state}: {hint}")


@dataclass(frozen=True)
class RecentRollbacks:
    """Which rollbacks are emergency undos: back to one of the last ``baselines`` baselines
    before the current, replaced less than ``seconds`` ago. Those need no approval under the
    ``auto`` policy and pass freezes; a rollback to an older baseline needs an approver other
    than its requester whatever the policy (SLIPWAY_ROLLBACK_RECENT_BASELINES,
    SLIPWAY_ROLLBACK_RECENT_SECONDS)."""

    baselines: int = 3
    seconds: int = 86400

    @classmethod
    def from_settings(cls, settings: Settings) -> RecentRollbacks:
        return cls(settings.rollback_recent_baselines, settings.rollback_recent_seconds)

    def describe(self) -> str:
        hours = self.seconds / 3600
        age = f"{hours:g}h" if hours >= 1 else f"{self.seconds}s"
        return (f"one of the last {self.baselines} baselines before the current, replaced "
                f"less than {age} ago")


def recent_rollback(session: Session, env: Environment, request: ReleaseRequest,
                    at: datetime, rule: RecentRollbacks) -> bool:
    """Whether ``request`` rolls back to a recent baseline (see :class:`RecentRollbacks`),
    judged at ``at``: the baseline ran until the next one replaced it, and at most
    ``rule.baselines`` were written after it."""
    if request.rollback_to is None:
        return False
    newer = session.exec(select(Baseline).where(
        Baseline.env_id == env.id, Baseline.version > request.rollback_to)
        .order_by(col(Baseline.version))).all()
    if not newer or len(newer) > rule.baselines:
        return False
    replaced_at = as_utc(newer[0].created_at)
    return (as_utc(at) - replaced_at).total_seconds() <= rule.seconds


def approval_required(app: Application, env: Environment, request: ReleaseRequest, *,
                      recent_rollback: bool = False) -> bool:
    """The environment's policy; ``auto`` means core applications in prod, rollbacks to a
    recent baseline excepted (an emergency undo must not wait for a second person unless
    policy says so). A rollback to an older baseline always needs a second person, as does a
    break-glass release; ``rollback --image`` is a release like any other. A train member
    was approved with its train."""
    if request.break_glass:
        return True
    if request.train_id is not None:
        return False
    if env.approval == ApprovalPolicy.REQUIRED:
        return True
    if request.rollback_to is not None:
        return not recent_rollback
    if env.approval == ApprovalPolicy.NONE:
        return False
    return app.tier == AppTier.CORE and env.env_type == "prod"


def check_old_rollback(app: Application, env: Environment, request: ReleaseRequest,
                       recent: bool, rule: RecentRollbacks) -> None:
    """A rollback to an older baseline needs an approver other than its requester."""
    if request.rollback_to is None or recent or request.train_id is not None:
        return
    others = [name for name in app.approvers if not same_person(name, request.requested_by)]
    if not others:
        who = ", ".join(app.approvers) or "none"
        raise CatalogueError(
            f"a rollback of {app.name}@{env.name} to v{request.rollback_to} needs approval: "
            f"it is not {rule.describe()}; {app.name} has no approver besides "
            f"{request.requested_by or 'the requester'} (approvers: {who}): {app.name} "
            "needs another approver, or roll back to a recent baseline")


def check_break_glass(app: Application, env: Environment, request: ReleaseRequest) -> None:
    """A break-glass release needs a reason and an approver other than its requester."""
    if not request.break_glass:
        return
    if not request.break_glass.strip():
        raise CatalogueError("break glass needs a reason: --break-glass \"why it cannot wait\"")
    others = [name for name in app.approvers if not same_person(name, request.requested_by)]
    if not others:
        who = ", ".join(app.approvers) or "none"
        raise CatalogueError(
            f"break glass on {app.name}@{env.name} needs a second approver, and there is none "
            f"besides {request.requested_by or 'the requester'} (approvers: {who}): {app.name} "
            "needs another approver, or the release waits for the window")


def _baseline(session: Session, env: Environment, version: int | None) -> Baseline | None:
    if version is None:
        return None
    return session.exec(select(Baseline).where(
        Baseline.env_id == env.id, Baseline.version == version)).first()


def _rollback_target(session: Session, env: Environment, version: int) -> ImageSpec:
    baseline = _baseline(session, env, version)
    if baseline is None:
        raise CatalogueError(f"{env.name} has no baseline v{version} to roll back to; "
                             f"see `slipway baseline list`")
    return ImageSpec(image=baseline.image, digest=baseline.digest)


def _apply_change(session: Session, request: ReleaseRequest) -> ReleaseRequest:
    """Fill the request from its change (image, ref, replicas, resources) and check it."""
    if request.change_id is None:
        return request
    change = session.get(Change, request.change_id)
    if change is None:
        raise CatalogueError(f"change {request.change_id} does not exist")
    if change.state not in (ChangeState.READY_TO_RELEASE, ChangeState.RELEASING,
                            ChangeState.APPROVING):
        raise CatalogueError(f"change {change.id} is {change.state}; only a change that is "
                             f"ready_to_release can be released (`slipway change submit`)")
    return request.model_copy(update={
        "image": request.image or change.image or None, "ref": request.ref or change.ref or None,
        "replicas": request.replicas or change.replicas,
        "cpu": request.cpu or change.cpu or None, "memory": request.memory or change.memory or None,
    })


def next_version(session: Session, env_id: int, current: int) -> int:
    """The version label of a new release: above the baseline and above every version an
    earlier release of the environment was given. A failed release may leave containers of
    its version behind; a label is never handed out twice, so nothing adopts them."""
    highest = session.exec(select(func.max(Release.to_version))
                           .where(Release.env_id == env_id)).one()
    return max(current, highest or 0) + 1


def open_release(store: Store, data: PrepareReleaseInput, *, drain_timeout_seconds: float,
                 progress_deadline_seconds: float,
                 fast_rollback_window_seconds: int = 86400,
                 rollbacks: RecentRollbacks | None = None,
                 agents_within: float = 120.0) -> ReleasePlan:
    """Validate the request, record a running release, and return the plan to carry out.

    On a Docker cluster whose hosts have agents, the plan names the hosts whose agent was
    seen within ``agents_within`` seconds (catalogue/hosts.py)."""
    rule = rollbacks or RecentRollbacks()
    with store.session() as session:
        app = find_app(session, data.request.app)
        env = find_env(session, app, data.request.env)
        request = _apply_change(session, data.request)
        # Before anything is written: a cluster whose agents are all away refuses the release.
        hosts = agent_hosts(session, env.cluster, agents_within)
        release = session.exec(select(Release).where(Release.run_id == data.run_id)).first()
        current = latest_baseline(session, env.id or 0)
        # Judged at the release's start, so a retried prepare decides the same.
        started_at = release.started_at if release is not None else utcnow()
        recent = recent_rollback(session, env, request, started_at, rule)
        needs_approval = approval_required(app, env, request, recent_rollback=recent)
        target = ImageSpec(image=request.image) if request.image else None
        if request.rollback_to is not None:
            target = _rollback_target(session, env, request.rollback_to)
        elif target and current and target.image == current.image and not target.digest:
            # A scale or resources change runs what the baseline recorded, by digest.
            target = ImageSpec(image=current.image, digest=current.digest)
        if release is None:
            check_releasable(app)
            check_break_glass(app, env, request)
            check_old_rollback(app, env, request, recent, rule)
            check_not_held(app, env, request)
            if target is not None:
                check_not_rejected(session, app, target, allow=request.allow_rejected,
                                   actor=request.requested_by)
            else:
                check_ref_not_rejected(session, app, request.ref, request.allow_rejected)
            if target is None and not app.source:
                raise CatalogueError(
                    f"application {app.name!r} has no build source: pass --image REF, or "
                    f"register it with --source DIR"
                )
            if needs_approval and not app.approvers:
                raise CatalogueError(
                    f"releases of {app.name} on {env.name} need approval, but {app.name} has "
                    f"no approvers: register approvers, or set the environment's approval "
                    f"policy to none"
                )
            from_version = current.version if current else 0
            release = Release(
                app_id=app.id or 0, env_id=env.id or 0, change_id=request.change_id,
                workflow_id=data.workflow_id, run_id=data.run_id, from_version=from_version,
                to_version=next_version(session, env.id or 0, from_version),
                image=target.image if target else "",
                requested_by=request.requested_by, rollback_to=request.rollback_to,
                rollback=request.is_rollback, break_glass=request.break_glass,
                train_id=request.train_id, started_at=started_at,
                # A target known by digest runs as it is: checked now (else once resolved).
                digest=target.digest if target else "",
                image_checked=bool(target and target.digest),
                allow_rejected=request.allow_rejected,
            )
            session.add(release)
            if request.is_rollback and request.train_id is None:
                session.flush()  # the hold names the release
                hold_after_rollback(session, app, env, release)
            _move_change(session, request.change_id, ChangeState.RELEASING)
            audit(session, "release.started", actor=request.requested_by, app=app.name,
                  env=env.name, workflow_id=data.workflow_id, to_version=release.to_version,
                  rollback_to=request.rollback_to, rollback=request.is_rollback,
                  **({"recent_rollback": recent} if request.rollback_to is not None else {}),
                  **({"break_glass": request.break_glass} if request.break_glass else {}),
                  **({"allow_rejected": request.allow_rejected}
                     if request.allow_rejected else {}),
                  **({"train_id": request.train_id} if request.train_id else {}))
            session.commit()
        return ReleasePlan(
            release_id=release.id or 0, app=app.name, env=env.name,
            env_key=env_key(app.name, env.env_type, env.cluster), lb_port=env.lb_port,
            cluster=env.cluster, strategy=env.strategy,
            replicas=request.replicas or env.replicas, ports=env.ports,
            env_var_names=sorted(env.env_vars), env_id=env.id or 0,
            cpu=request.cpu or env.cpu, memory=request.memory or env.memory,
            health_path=env.health_path, source=app.source, namespace=env.namespace,
            from_version=release.from_version, to_version=release.to_version,
            current=ImageSpec(image=current.image, digest=current.digest) if current else None,
            current_replicas=current.replicas if current else 0, target=target,
            drain_timeout_seconds=drain_timeout_seconds,
            progress_deadline_seconds=progress_deadline_seconds,
            gray_steps=env.gray_steps, stable_seconds=env.stable_seconds,
            batch_size=env.batch_size, approval_required=needs_approval,
            approvers=app.approvers, approval_timeout_seconds=env.approval_timeout_seconds,
            requested_by=request.requested_by, rollback_to=request.rollback_to,
            rollback_recent=recent,
            # A rollback to a baseline returns to a known version: judged already, no canary
            # to analyse. `rollback --image` runs a new image: analysed like any release.
            analysis=None if request.rollback_to is not None else policy_of(env.analysis),
            analysis_skipped=(f"a rollback to baseline {request.rollback_to} returns to a "
                              "version judged before"
                              if request.rollback_to is not None
                              and policy_of(env.analysis) is not None else ""),
            fast_rollback=(env.strategy != Strategy.RECREATE  # never two versions at once
                           and recent
                           and _fast_rollback(request, current, release,
                                              fast_rollback_window_seconds)),
            break_glass=request.break_glass, no_wait=request.no_wait,
            **hosts,
            target_placement=getattr(_baseline(session, env, request.rollback_to),
                                     "placement", None) or {},
            current_placement=current.placement if current else {},
        )


def _fast_rollback(request: ReleaseRequest, current: Baseline | None, release: Release,
                   window_seconds: int) -> bool:
    """A rollback to a baseline that ran until recently: the old version comes back at full
    strength in one step. Measured from when the current baseline replaced it (or, once the
    release is recorded, from when this release started, so a retry decides the same)."""
    if request.rollback_to is None or request.gradual or current is None:
        return False
    return (as_utc(release.started_at) - as_utc(current.created_at)).total_seconds() \
        <= window_seconds


def _move_change(session: Session, change_id: int | None, state: ChangeState) -> None:
    if change_id is None:
        return
    change = session.get(Change, change_id)
    if change is not None and change.state != state:
        change.state = state
        session.add(change)
        app = session.get(Application, change.app_id)
        audit(session, f"change.{state}", app=app.name if app else "", change_id=change.id)


def note_approval(store: Store, data: NoteApprovalInput) -> None:
    """Record that the release waits for approval, or who approved it."""
    with store.session() as session:
        release = session.get(Release, data.release_id)
        if release is None:
            raise CatalogueError(f"release {data.release_id} does not exist")
        if data.approver:
            release.approved_by = data.approver
            session.add(release)
            _move_change(session, release.change_id, ChangeState.RELEASING)
        else:
            _move_change(session, release.change_id, ChangeState.APPROVING)
        app, env = session.get(Application, release.app_id), session.get(Environment,
                                                                          release.env_id)
        audit(session, "release.approved" if data.approver else "release.awaiting_approval",
              actor=data.approver, app=app.name if app else "", env=env.name if env else "",
              release_id=release.id, **({"via": data.via} if data.via else {}))
        session.commit()


def finish_release(store: Store, data: FinishReleaseInput) -> FinishReleaseResult:
    """Close a release; on success write baseline N+1 and bring the application online."""
    with store.session() as session:
        release = session.get(Release, data.release_id)
        if release is None:
            raise CatalogueError(f"release {data.release_id} does not exist")
        existing = session.exec(select(Baseline).where(Baseline.release_id == release.id)).first()
        if release.state != ReleaseState.RUNNING:
            return FinishReleaseResult(baseline_version=existing.version if existing else None)
        env = session.get(Environment, release.env_id)
        app = session.get(Application, release.app_id)
        assert env is not None and app is not None  # foreign keys guarantee both
        release.state = data.state
        release.error = data.error
        release.approved_by = data.approved_by or release.approved_by
        release.finished_at = utcnow()
        baseline_version: int | None = None
        if data.state == ReleaseState.SUCCEEDED:
            baseline_version = _write_baseline(session, app, env, release, data)
        elif data.state == ReleaseState.ROLLED_BACK:
            reject_target(session, app, env, release)  # the same image must not come back
        _move_change(session, release.change_id, CHANGE_AFTER[data.state])
        session.add(release)
        audit(session, f"release.{data.state}", app=app.name, env=env.name,
              release_id=release.id, baseline=baseline_version, error=data.error)
        session.commit()
        return FinishReleaseResult(baseline_version=baseline_version)


def _write_baseline(session: Session, app: Application, env: Environment, release: Release,
                    data: FinishReleaseInput) -> int:
    if data.image is None:
        raise CatalogueError(f"release {release.id} succeeded without an image")
    change = session.get(Change, release.change_id) if release.change_id else None
    # A scale or resources change becomes the environment's new normal.
    if change is not None:
        env.replicas = change.replicas or env.replicas
        env.cpu = change.cpu or env.cpu
        env.memory = change.memory or env.memory
        session.add(env)
    release.image = data.image.image
    baseline = Baseline(
        env_id=env.id or 0, version=release.to_version, image=data.image.image,
        digest=data.image.digest, replicas=env.replicas, cpu=env.cpu, memory=env.memory,
        release_id=release.id,
        rolled_back_from=release.from_version if release.rollback else None,
        placement=data.placement,
    )
    session.add(baseline)
    if release.rollback:
        _count_rollback(session, env, release.from_version)
    if app.state == AppState.READY:
        app.state = AppState.ONLINE  # the first successful release brings it online
        session.add(app)
    return baseline.version


def _count_rollback(session: Session, env: Environment, rolled_back_version: int) -> None:
    """Record the rollback on the change whose release wrote the baseline rolled back from."""
    rolled_back = session.exec(select(Baseline).where(
        Baseline.env_id == env.id, Baseline.version == rolled_back_version)).first()
    source = session.get(Release, rolled_back.release_id) if rolled_back and \
        rolled_back.release_id else None
    change = session.get(Change, source.change_id) if source and source.change_id else None
    if change is not None:
        change.rollback_count += 1
        session.add(change)
        audit(session, "change.rolled_back", change_id=change.id, version=rolled_back_version)


# A value such as ${credential:db-password} names a credential (SLIPWAY_CREDENTIALS) instead
# of holding the secret: the catalogue stores the reference, the worker puts in the value when
# it starts a container.
CREDENTIAL_REF = re.compile(r"\$\{credential:([A-Za-z0-9._-]{1,64})\}")


def resolve_credentials(values: dict[str, str],
                        credential: Callable[[str], str]) -> dict[str, str]:
    """``values`` with every ``${credential:NAME}`` replaced by that credential's value;
    CatalogueError naming the variable and the credential when it is not configured."""
    resolved = {}
    for key, value in values.items():
        reference = CREDENTIAL_REF.fullmatch(value)
        if reference:
            value = credential(reference.group(1))
            if not value:
                raise CatalogueError(f"environment variable {key} refers to credential "
                                     f"{reference.group(1)!r}, which SLIPWAY_CREDENTIALS does "
                                     "not set on this worker")
        resolved[key] = value
    return resolved


def env_values(store: Store, env_id: int,
               credential: Callable[[str], str] = lambda _name: "") -> dict[str, str]:
    """The environment variables of environment ``env_id`` (credential references resolved),
    read when a version starts."""
    with store.session() as session:
        env = session.get(Environment, env_id)
        if env is None:
            raise CatalogueError(f"environment {env_id} does not exist")
        return resolve_credentials(dict(env.env_vars), credential)
