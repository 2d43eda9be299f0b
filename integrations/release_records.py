"""Release bookkeeping in the catalogue: open a release (发布单), close it, write the baseline.

Both operations are idempotent, keyed by the workflow run, so an activity retry never writes
a second release row or a second baseline.
"""

from __future__ import annotations

import re

from sqlmodel import Session, select

from integrations.store import CatalogueError, Store, audit, find_app, find_env, latest_baseline
from schemas.enums import UNRELEASABLE_APP_STATES, AppState, ChangeState, ReleaseState
from schemas.models import (
    FinishReleaseInput,
    FinishReleaseResult,
    ImageSpec,
    PrepareReleaseInput,
    ReleasePlan,
)
from schemas.tables import Application, Baseline, Change, Environment, Release, utcnow


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


def open_release(store: Store, data: PrepareReleaseInput, *, drain_timeout_seconds: float,
                 progress_deadline_seconds: float) -> ReleasePlan:
    """Validate the request, record a running release, and return the plan to carry out."""
    request = data.request
    with store.session() as session:
        app = find_app(session, request.app)
        env = find_env(session, app, request.env)
        release = session.exec(select(Release).where(Release.run_id == data.run_id)).first()
        current = latest_baseline(session, env.id or 0)
        if release is None:
            check_releasable(app)
            if not request.image and not app.source:
                raise CatalogueError(
                    f"application {app.name!r} has no build source: pass --image REF, or "
                    f"register it with --source DIR"
                )
            release = Release(
                app_id=app.id or 0, env_id=env.id or 0, change_id=request.change_id,
                workflow_id=data.workflow_id, run_id=data.run_id,
                from_version=current.version if current else 0,
                to_version=(current.version if current else 0) + 1,
                image=request.image or "", requested_by=request.requested_by,
            )
            session.add(release)
            _move_change(session, request.change_id, ChangeState.RELEASING)
            audit(session, "release.started", actor=request.requested_by, app=app.name,
                  env=env.name, workflow_id=data.workflow_id, to_version=release.to_version)
            session.commit()
        plan = _plan(app, env, release, current, request.image)
        return plan.model_copy(update={"drain_timeout_seconds": drain_timeout_seconds,
                                       "progress_deadline_seconds": progress_deadline_seconds})


def _plan(app: Application, env: Environment, release: Release, current: Baseline | None,
          image: str | None) -> ReleasePlan:
    return ReleasePlan(
        release_id=release.id or 0, app=app.name, env=env.name,
        env_key=env_key(app.name, env.env_type, env.cluster), lb_port=env.lb_port,
        cluster=env.cluster, strategy=env.strategy, replicas=env.replicas, ports=env.ports,
        env_vars=env.env_vars, cpu=env.cpu, memory=env.memory, health_path=env.health_path,
        source=app.source, from_version=release.from_version, to_version=release.to_version,
        current=ImageSpec(image=current.image, digest=current.digest) if current else None,
        current_replicas=current.replicas if current else 0,
        target=ImageSpec(image=image) if image else None,
    )


def _move_change(session: Session, change_id: int | None, state: ChangeState) -> None:
    if change_id is None:
        return
    change = session.get(Change, change_id)
    if change is not None:
        change.state = state
        session.add(change)


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
        release.finished_at = utcnow()
        baseline_version: int | None = None
        if data.state == ReleaseState.SUCCEEDED:
            if data.image is None:
                raise CatalogueError(f"release {release.id} succeeded without an image")
            release.image = data.image.image
            baseline = Baseline(
                env_id=env.id or 0, version=release.to_version, image=data.image.image,
                digest=data.image.digest, replicas=env.replicas, cpu=env.cpu, memory=env.memory,
                release_id=release.id,
            )
            session.add(baseline)
            baseline_version = baseline.version
            if app.state == AppState.READY:
                app.state = AppState.ONLINE  # the first successful release brings it online
                session.add(app)
            _move_change(session, release.change_id, ChangeState.RELEASED)
        else:
            _move_change(session, release.change_id, ChangeState.FAILED)
        session.add(release)
        audit(session, f"release.{data.state}", app=app.name, env=env.name,
              release_id=release.id, baseline=baseline_version, error=data.error)
        session.commit()
        return FinishReleaseResult(baseline_version=baseline_version)
