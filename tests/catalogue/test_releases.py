"""Release records: a version label is handed to one release only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import col, select

from catalogue.lanes import record_lane
from catalogue.releases import env_values, finish_release, note_approval, open_release
from catalogue.store import CatalogueError, Store
from catalogue.tables import AuditEvent, Environment
from schemas.enums import ReleaseState, Strategy
from schemas.lanes import LaneRecordInput, LaneStage
from schemas.models import (
    FinishReleaseInput,
    ImageSpec,
    NoteApprovalInput,
    PrepareReleaseInput,
    ReleasePlan,
    ReleaseRequest,
)
from schemas.settings import get_settings
from tests.support.cli import ok
from tests.support.hermetic import scrub_settings


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    scrub_settings(monkeypatch)
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    monkeypatch.setenv("SLIPWAY_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLIPWAY_DATABASE_URL", url)
    monkeypatch.setenv("SLIPWAY_USER", "tester")
    get_settings.cache_clear()
    catalogue = Store(url)
    ok("app register shop --ready")
    ok("env add shop test")
    yield catalogue
    catalogue.engine.dispose()
    get_settings.cache_clear()


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
