"""Rejected versions and holds on automatic releases (issue #29): a rolled-back release
rejects its image; a later release, hook or train of it is refused with the reason unless a
person allows it; a manual rollback holds hook and train releases until `env resume-auto`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from catalogue.holds import hold_of
from catalogue.rejections import RejectedVersion, admit_image, list_rejected
from catalogue.releases import finish_release, open_release
from catalogue.store import CatalogueError, Store
from catalogue.tables import AuditEvent, Build, Change, Release
from catalogue.trains import check_train
from schemas.enums import ReleaseState
from schemas.models import (
    FinishReleaseInput,
    ImageSpec,
    PrepareReleaseInput,
    ReleasePlan,
    ReleaseRequest,
)
from schemas.trains import TrainMember, TrainRequest
from starter.api.app import change_for_push
from starter.api.hooks import GitEvent
from starter.service.releases import validate_release
from tests.support.catalogue import fresh_catalogue
from tests.support.cli import ok, run

BAD = "sha256:" + "b" * 64
GOOD = "sha256:" + "a" * 64
SHA = "c" * 40


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    with fresh_catalogue(tmp_path, monkeypatch) as catalogue:
        (tmp_path / "src").mkdir()
        ok(f"app register shop --ready --source {tmp_path / 'src'}")
        ok("env add shop prod")
        ok("app register cart --ready")
        ok("env add cart prod")
        yield catalogue


def _open(store: Store, run_id: str, **request: object) -> ReleasePlan:
    fields: dict[str, object] = {"app": "shop", "env": "prod@local", "requested_by": "dev",
                                 **request}
    return open_release(store, PrepareReleaseInput(
        request=ReleaseRequest.model_validate(fields), workflow_id="release:shop:prod@local",
        run_id=run_id), drain_timeout_seconds=5, progress_deadline_seconds=30)


def _finish(store: Store, plan: ReleasePlan, state: ReleaseState, image: ImageSpec,
            error: str = "") -> None:
    finish_release(store, FinishReleaseInput(
        release_id=plan.release_id, state=state, error=error,
        image=image if state == ReleaseState.SUCCEEDED else None))


def _rolled_back(store: Store) -> ReleasePlan:
    """Release 1 of slipway/shop:2 resolves to BAD and is rolled back by its analysis."""
    plan = _open(store, "r1", image="slipway/shop:2")
    admit_image(store, "shop", ImageSpec(image="slipway/shop:2", digest=BAD), "r1")
    _finish(store, plan, ReleaseState.ROLLED_BACK, ImageSpec(image="slipway/shop:2"),
            error="analysis: error-rate 7.2% > 1%")
    return plan


def _events(store: Store, action: str) -> list[AuditEvent]:
    with store.session() as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_a_rolled_back_release_rejects_its_digest_once(store: Store) -> None:
    plan = _rolled_back(store)
    _finish(store, plan, ReleaseState.ROLLED_BACK, ImageSpec(image="x"))  # a retried finish
    [row] = list_rejected(store, "shop")
    assert (row.key, row.image, row.release_id, row.env) == (BAD, "slipway/shop:2",
                                                             plan.release_id, "prod@local")
    assert row.reason == "analysis: error-rate 7.2% > 1%"
    assert len(_events(store, "version.rejected")) == 1


def test_a_release_that_never_ran_its_image_rejects_nothing(store: Store) -> None:
    plan = _open(store, "r1", image="slipway/shop:2")  # refused or failed before resolving
    _finish(store, plan, ReleaseState.ROLLED_BACK, ImageSpec(image="x"), error="cancelled")
    assert list_rejected(store, "shop") == []


def test_the_rejected_digest_is_refused_with_the_reason_and_nothing_is_written(
    store: Store,
) -> None:
    first = _rolled_back(store)
    # Known by digest at prepare: refused before a release row exists.
    with pytest.raises(CatalogueError, match=rf"rejected by release {first.release_id} on "
                                             r"prod@local at .*error-rate 7.2%.*--allow"):
        _open(store, "r2", image=f"registry.local/shop@{BAD}")
    with store.session() as session:
        assert session.exec(select(Release).where(Release.run_id == "r2")).first() is None
    # The same tag resolves to the same digest: refused once resolved, nothing recorded.
    plan = _open(store, "r3", image="slipway/shop:2")
    with pytest.raises(CatalogueError, match="error-rate"):
        admit_image(store, "shop", ImageSpec(image="slipway/shop:2", digest=BAD), "r3")
    with store.session() as session:
        row = session.get(Release, plan.release_id)
        assert row is not None and not row.image_checked and row.digest == ""
    # ... so its end rejects nothing new, and a fixed image under the tag passes.
    _finish(store, plan, ReleaseState.ROLLED_BACK, ImageSpec(image="x"), error="refused")
    assert [row.release_id for row in list_rejected(store, "shop")] == [first.release_id]
    _open(store, "r4", image="slipway/shop:2")
    admit_image(store, "shop", ImageSpec(image="slipway/shop:2", digest=GOOD), "r4")


def test_allow_rejected_passes_is_recorded_on_the_release_and_audited(store: Store) -> None:
    _rolled_back(store)
    with pytest.raises(CatalogueError, match="needs a reason"):
        validate_release(store, ReleaseRequest(app="shop", env="prod", image="slipway/shop:2",
                                               allow_rejected="  "))
    plan = _open(store, "r2", image="slipway/shop:2", allow_rejected="INC-7 fixed by config")
    admit_image(store, "shop", ImageSpec(image="slipway/shop:2", digest=BAD), "r2")
    with store.session() as session:
        row = session.get(Release, plan.release_id)
        assert row is not None and row.allow_rejected == "INC-7 fixed by config"
        assert row.digest == BAD and row.image_checked
    [allowed] = _events(store, "rejected.allowed")
    assert (allowed.actor, allowed.detail["key"], allowed.detail["reason"]) == (
        "dev", BAD, "INC-7 fixed by config")


def test_a_build_of_a_rejected_digest_is_refused_before_it_is_recorded(store: Store) -> None:
    _rolled_back(store)
    _open(store, "r2", ref=SHA)
    with pytest.raises(CatalogueError, match="rejected by release"):
        admit_image(store, "shop", ImageSpec(image="slipway/shop:v2", digest=BAD), "r2")
    # A lane push (no release) of it too.
    with pytest.raises(CatalogueError, match="rejected by release"):
        admit_image(store, "shop", ImageSpec(image="slipway/shop:lane", digest=BAD), "lane-run")


def _hook(store: Store) -> tuple[ReleaseRequest, str]:
    event = GitEvent("branch", "team/shop", "main", SHA, "alice")
    wanted = ReleaseRequest(app="shop", env="prod", ref=SHA, requested_by="alice",
                            trigger="hook")
    return change_for_push(store, wanted, event)


def test_a_hook_of_a_commit_built_into_a_rejected_digest_is_refused(store: Store) -> None:
    _rolled_back(store)
    with store.session() as session:
        session.add(Build(app_id=1, ref=SHA, version_label="v1", image="slipway/shop:v1",
                          digest=BAD))
        session.commit()
    with pytest.raises(CatalogueError, match=f"{SHA} was built as slipway/shop:v1: .*rejected"):
        _hook(store)
    with store.session() as session:
        assert session.exec(select(Change)).first() is None  # nothing half-written


def test_a_manual_rollback_holds_hooks_and_trains_until_a_person_resumes_them(
    store: Store,
) -> None:
    for number, run_id in enumerate(("r1", "r2"), start=1):
        plan = _open(store, run_id, image=f"slipway/shop:{number}")
        _finish(store, plan, ReleaseState.SUCCEEDED,
                ImageSpec(image=f"slipway/shop:{number}", digest=f"sha256:{number}"))
    rollback = _open(store, "r3", rollback_to=1, image="slipway/shop:1")
    assert f"release {rollback.release_id}" in hold_of(store, "shop", "prod")
    with pytest.raises(CatalogueError, match="slipway env resume-auto shop prod@local"):
        _hook(store)
    with pytest.raises(CatalogueError, match="holds automatic releases"):
        check_train(store, TrainRequest(name="t", members=[
            TrainMember(app="shop", env="prod", image="slipway/shop:3"),
            TrainMember(app="cart", env="prod", image="slipway/cart:3")]))
    with pytest.raises(CatalogueError, match="holds automatic releases"):  # at prepare too
        _open(store, "r4", ref=SHA, trigger="hook")
    # A person's own release is not held.
    validate_release(store, ReleaseRequest(app="shop", env="prod", image="slipway/shop:3"))

    assert "hold" in run("env resume-auto shop prod --reason 'fixed'").output
    assert hold_of(store, "shop", "prod") == ""
    [resumed] = _events(store, "env.auto_resumed")
    assert (resumed.actor, resumed.detail["reason"]) == ("tester", "fixed")
    checked, _summary = _hook(store)
    assert checked.trigger == "hook" and checked.change_id is not None
    result = run("env resume-auto shop prod")
    assert result.exit_code == 1 and "does not hold" in result.output


def test_the_cli_refuses_a_rejected_image_lists_and_clears_it(store: Store) -> None:
    plan = _rolled_back(store)
    result = run(f"release shop prod --image registry.local/shop@{BAD}")
    assert result.exit_code == 1
    assert f"rejected by release {plan.release_id}" in result.output
    listed = ok("rejected list shop").output
    assert "error-rate" in listed and BAD[:20] in listed
    assert run(f"rejected clear shop {BAD}").exit_code == 1  # a reason is needed
    ok(f"rejected clear shop {BAD} --reason 'root cause fixed in the DB, not the image'")
    with store.session() as session:
        assert session.exec(select(RejectedVersion)).first() is None
    assert len(_events(store, "rejected.cleared")) == 1
    validate_release(store, ReleaseRequest(app="shop", env="prod",
                                           image=f"registry.local/shop@{BAD}"))
