"""Release records: a version label is handed to one release only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from catalogue.lanes import record_lane
from catalogue.releases import (
    RecentRollbacks,
    env_values,
    finish_release,
    note_approval,
    open_release,
)
from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, AuditEvent, Baseline, Environment, Release
from schemas.enums import ApprovalPolicy, ReleaseState, Strategy
from schemas.lanes import LaneRecordInput, LaneStage
from schemas.models import (
    FinishReleaseInput,
    ImageSpec,
    NoteApprovalInput,
    PrepareReleaseInput,
    ReleasePlan,
    ReleaseRequest,
)
from tests.support.catalogue import fresh_catalogue
from tests.support.cli import ok


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    with fresh_catalogue(tmp_path, monkeypatch) as catalogue:
        ok("app register shop --ready")
        ok("env add shop test")
        yield catalogue


def _open(store: Store, run: str) -> ReleasePlan:
    """Prepare a release of shop on test@local as the workflow run ``run`` does."""
    request = ReleaseRequest(app="shop", env="test@local", image="slipway/shop:1",
                             requested_by="dev")
    return open_release(store, PrepareReleaseInput(request=request, workflow_id="release:shop",
                                                   run_id=run),
                        drain_timeout_seconds=5, progress_deadline_seconds=30)


def _finish(store: Store, plan: ReleasePlan, state: ReleaseState) -> None:
    finish_release(store, FinishReleaseInput(
        release_id=plan.release_id, state=state, error="" if state == ReleaseState.SUCCEEDED
        else "v2 unhealthy; undo failed", image=ImageSpec(image="slipway/shop:1")
        if state == ReleaseState.SUCCEEDED else None))


def test_a_failed_release_keeps_its_version_label(store: Store) -> None:
    _finish(store, _open(store, "run-1"), ReleaseState.SUCCEEDED)
    failed = _open(store, "run-2")
    assert failed.to_version == 2
    assert _open(store, "run-2").to_version == 2  # a retried prepare: the same plan
    _finish(store, failed, ReleaseState.FAILED)
    # v2's containers may still exist: the next release must not be v2 again.
    following = _open(store, "run-3")
    assert (following.from_version, following.to_version) == (1, 3)
    _finish(store, following, ReleaseState.SUCCEEDED)
    assert _open(store, "run-4").to_version == 4


def test_approval_audit_rows_name_the_app_and_env(store: Store) -> None:
    plan = _open(store, "run-approve")
    note_approval(store, NoteApprovalInput(release_id=plan.release_id))
    note_approval(store, NoteApprovalInput(release_id=plan.release_id, approver="lead"))
    with store.session() as session:
        rows = session.exec(select(AuditEvent).where(
            col(AuditEvent.action).startswith("release.a"))).all()
    assert [(row.action, row.app, row.env) for row in rows] == [
        ("release.awaiting_approval", "shop", "test@local"),
        ("release.approved", "shop", "test@local")]


def test_lane_audit_rows_name_the_apps_and_the_lane(store: Store) -> None:
    record_lane(store, LaneRecordInput(name="try-1", workflow_id="swimlane:try-1",
                                       apps=["shop", "cart"], stage=LaneStage.ACTIVE))
    with store.session() as session:
        row = session.exec(select(AuditEvent).where(AuditEvent.action == "lane.active")).one()
    assert (row.app, row.env) == ("shop,cart", "lane:try-1")


def test_a_plan_names_environment_variables_and_the_worker_reads_their_values(
    store: Store,
) -> None:
    ok("env add shop prod --env DB_PASSWORD=hunter2-do-not-log --env MODE=prod")
    request = ReleaseRequest(app="shop", env="prod@local", image="slipway/shop:1",
                             requested_by="dev")
    plan = open_release(store, PrepareReleaseInput(request=request, workflow_id="release:x",
                                                   run_id="r1"),
                        drain_timeout_seconds=5, progress_deadline_seconds=30)
    # The plan is the activity's result, stored in workflow history: names only.
    assert "hunter2" not in plan.model_dump_json()
    assert plan.env_var_names == ["DB_PASSWORD", "MODE"]
    assert plan.env_vars == {}
    assert env_values(store, plan.env_id) == {"DB_PASSWORD": "hunter2-do-not-log",
                                              "MODE": "prod"}


def test_a_credential_reference_is_stored_as_such_and_resolved_by_the_worker(
    store: Store,
) -> None:
    ok("env add shop prod --env 'DB_PASSWORD=${credential:shop-db}' --env MODE=prod")
    request = ReleaseRequest(app="shop", env="prod@local", image="slipway/shop:1",
                             requested_by="dev")
    plan = open_release(store, PrepareReleaseInput(request=request, workflow_id="release:x",
                                                   run_id="r1"),
                        drain_timeout_seconds=5, progress_deadline_seconds=30)
    secrets = {"shop-db": "s3cr3t-value"}
    assert env_values(store, plan.env_id, secrets.get) == {  # type: ignore[arg-type]
        "DB_PASSWORD": "s3cr3t-value", "MODE": "prod"}
    with pytest.raises(CatalogueError, match="DB_PASSWORD refers to credential 'shop-db'"):
        env_values(store, plan.env_id, lambda _name: "")


def _rollback(store: Store, run: str, window: int, gradual: bool = False) -> ReleasePlan:
    request = ReleaseRequest(app="shop", env="test@local", image="slipway/shop:1",
                             requested_by="dev", rollback_to=1, gradual=gradual)
    return open_release(store, PrepareReleaseInput(request=request, workflow_id="release:shop",
                                                   run_id=run),
                        drain_timeout_seconds=5, progress_deadline_seconds=30,
                        fast_rollback_window_seconds=window)


def test_a_rollback_to_a_recent_baseline_is_fast_unless_gradual_or_recreate(
        store: Store) -> None:
    _finish(store, _open(store, "run-1"), ReleaseState.SUCCEEDED)
    _finish(store, _open(store, "run-2"), ReleaseState.SUCCEEDED)
    ok("env add shop prod --strategy gray")
    # test@local is recreate: one step already, and never two versions at once.
    assert not _rollback(store, "run-3", window=3600).fast_rollback
    with store.session() as session:
        env = session.exec(select(Environment).where(Environment.env_type == "test")).one()
        env.strategy = Strategy.GRAY
        env.analysis = {"metrics": [{"name": "errors", "query": "error_rate", "max": 0.1}]}
        session.add(env)
        session.commit()
    plan = _rollback(store, "run-4", window=3600)
    assert plan.fast_rollback and plan.analysis is None  # a rollback is never analysed
    assert not _rollback(store, "run-5", window=3600, gradual=True).fast_rollback
    assert not _rollback(store, "run-6", window=0).fast_rollback  # replaced too long ago
    assert _open(store, "run-7").analysis is not None  # a release is


# ---------------------------------------------------------------- which rollbacks are recent


def _released(store: Store, versions: int, app: str = "pay", env: str = "prod@local") -> None:
    """Baselines v1..v<versions> of APP on ENV, as finished releases write them."""
    for number in range(1, versions + 1):
        request = ReleaseRequest(app=app, env=env, image=f"slipway/{app}:{number}",
                                 requested_by="dev")
        plan = open_release(store, PrepareReleaseInput(
            request=request, workflow_id=f"release:{app}", run_id=f"{app}-{number}"),
            drain_timeout_seconds=5, progress_deadline_seconds=30)
        finish_release(store, FinishReleaseInput(
            release_id=plan.release_id, state=ReleaseState.SUCCEEDED,
            image=ImageSpec(image=f"slipway/{app}:{number}", digest=f"sha256:{number}")))


def _plan(store: Store, run: str, requested_by: str = "dev", **request: object) -> ReleasePlan:
    return open_release(store, PrepareReleaseInput(
        request=ReleaseRequest(app="pay", env="prod@local", requested_by=requested_by,
                               **request),  # type: ignore[arg-type]
        workflow_id="release:pay", run_id=run),
        drain_timeout_seconds=5, progress_deadline_seconds=30,
        rollbacks=RecentRollbacks(baselines=3, seconds=3600))


@pytest.fixture
def pay(store: Store) -> Store:
    """pay: core, approvers dev and lead, prod@local gray with an analysis policy (approval
    none, so only what the rollback rules add asks for approval); baselines v1..v5."""
    ok("app register pay --ready --tier core --approver dev --approver lead")
    ok("env add pay prod --strategy gray --replicas 4 --approval none")
    with store.session() as session:
        env = session.exec(select(Environment).where(Environment.env_type == "prod")).one()
        env.analysis = {"metrics": [{"name": "errors", "query": "error_rate", "max": 0.1}]}
        session.add(env)
        session.commit()
    _released(store, 5)
    return store


def test_rollback_image_is_a_release_approved_by_policy_and_analysed(pay: Store) -> None:
    image: dict[str, object] = {"image": "slipway/pay:hotfix", "rollback": True}
    plan = _plan(pay, "image-1", "dev", **image)
    assert plan.analysis is not None  # the canary is judged like any release's
    assert plan.analysis_skipped == ""
    assert not plan.fast_rollback and not plan.rollback_recent
    assert not plan.approval_required  # prod@local's policy is none
    with pay.session() as session:
        env = session.exec(select(Environment).where(Environment.env_type == "prod")).one()
        env.approval = ApprovalPolicy.AUTO  # core in prod: auto asks
        session.add(env)
        session.commit()
    assert _plan(pay, "image-2", "dev", **image).approval_required  # before: rollbacks were exempt


def test_a_rollback_to_a_recent_baseline_stays_fast_without_approval(pay: Store) -> None:
    plan = _plan(pay, "recent", rollback_to=2)  # v3, v4, v5 came after it: the last three
    assert plan.rollback_recent and plan.fast_rollback
    assert not plan.approval_required and plan.analysis is None
    # Not judged, and the release says why (its events): no silent off.
    assert plan.analysis_skipped == "a rollback to baseline 2 returns to a version judged before"


def test_a_rollback_to_an_old_baseline_needs_approval_whatever_the_policy(pay: Store) -> None:
    plan = _plan(pay, "old", rollback_to=1)  # four baselines came after v1
    assert plan.approval_required  # although prod@local's policy is none
    assert not plan.rollback_recent and not plan.fast_rollback
    with pay.session() as session:
        started = session.exec(select(AuditEvent).where(
            AuditEvent.action == "release.started")).all()[-1]
    assert started.detail["recent_rollback"] is False
    # Replaced too long ago counts as old too, however few came after it.
    with pay.session() as session:
        newest = session.exec(select(Baseline).where(Baseline.version == 5)).one()
        newest.created_at = newest.created_at - timedelta(hours=2)
        session.add(newest)
        session.commit()
    assert _plan(pay, "aged", rollback_to=4).approval_required
    assert not _plan(pay, "aged-2", rollback_to=4, gradual=True).rollback_recent


def test_an_old_rollback_with_no_second_approver_is_refused_before_anything_is_written(
        pay: Store) -> None:
    with pay.session() as session:
        app = session.exec(select(Application).where(Application.name == "pay")).one()
        app.approvers = ["dev"]
        session.add(app)
        session.commit()
        before = len(session.exec(select(Release)).all())
    with pytest.raises(CatalogueError) as refused:
        _plan(pay, "alone", rollback_to=1)
    assert ("a rollback of pay@prod@local to v1 needs approval: it is not one of the last 3 "
            "baselines before the current, replaced less than 1h ago") in str(refused.value)
    assert "no approver besides dev" in str(refused.value)
    with pay.session() as session:
        assert len(session.exec(select(Release)).all()) == before
    assert _plan(pay, "alone-recent", rollback_to=3).rollback_recent  # recent: no approver
