"""``slipway release history --all``: the change calendar across applications."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from catalogue.releases import finish_release, open_release
from catalogue.store import Store
from catalogue.tables import Release
from schemas.enums import ReleaseState
from schemas.models import FinishReleaseInput, ImageSpec, PrepareReleaseInput, ReleaseRequest
from tests.support.cli import ok, run


def released(store: Store, app: str, run_id: str, state: ReleaseState) -> None:
    plan = open_release(store, PrepareReleaseInput(
        request=ReleaseRequest(app=app, env="prod", image=f"slipway/{app}:1",
                               requested_by="dev"),
        workflow_id=f"release:{app}:prod@local", run_id=run_id),
        drain_timeout_seconds=5, progress_deadline_seconds=30)
    finish_release(store, FinishReleaseInput(
        release_id=plan.release_id, state=state,
        image=ImageSpec(image=f"slipway/{app}:1") if state == ReleaseState.SUCCEEDED else None,
        error="" if state == ReleaseState.SUCCEEDED else "v1 unhealthy"))


def test_the_calendar_lists_every_app_in_the_window_newest_first(store: Store) -> None:
    for app in ("shop", "cart"):
        ok(f"app register {app} --ready")
        ok(f"env add {app} prod --strategy recreate")
    released(store, "shop", "r1", ReleaseState.SUCCEEDED)
    released(store, "cart", "r2", ReleaseState.ROLLED_BACK)
    released(store, "cart", "r3", ReleaseState.SUCCEEDED)
    with store.session() as session:  # shop's release was ten days ago
        old = session.exec(select(Release).where(Release.run_id == "r1")).one()
        old.started_at = datetime.now(UTC) - timedelta(days=10)
        session.add(old)
        session.commit()
    entries = json.loads(ok("release history --all --since 7d --json").stdout)
    assert [(e["app"], e["state"], e["baseline_version"]) for e in entries] == [
        ("cart", "succeeded", 2), ("cart", "rolled_back", None)]
    assert entries[1]["error"] == "v1 unhealthy" and entries[0]["requested_by"] == "dev"
    assert len(json.loads(ok("release history --all --since 30d --json").stdout)) == 3
    table = ok("release history --all --since 7d").stdout
    assert "cart" in table and "shop" not in table


def test_the_calendar_refuses_what_it_cannot_answer(store: Store) -> None:
    result = run("release history shop prod --all")
    assert result.exit_code == 1 and "leave out APP and ENV" in result.output
    result = run("release history")
    assert result.exit_code == 1 and "or --all for every application" in result.output
    result = run("release history --all --since 2y")
    assert result.exit_code == 1 and "invalid --since" in result.output
    assert "no releases in the last 7d" in ok("release history --all").stdout
