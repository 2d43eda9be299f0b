"""``slipway env add`` rollout policy, ``change …``, ``baseline …``, ``release history`` /
``--change``, ``rollback``: behaviour through the real CLI and a SQLite store.

Nothing here talks to Temporal: where a command would start a release, ``run_release`` is
replaced by a recorder, so the tests see exactly the request the workflow would get.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from typer.testing import CliRunner, Result

from catalogue.releases import RecentRollbacks, finish_release, open_release
from catalogue.store import CatalogueError, Store
from catalogue.tables import (
    Application,
    AuditEvent,
    Baseline,
    Change,
    Environment,
    Release,
)
from schemas.enums import ChangeState, ReleaseState
from schemas.models import FinishReleaseInput, ImageSpec, PrepareReleaseInput, ReleaseRequest
from schemas.settings import get_settings
from starter.cli.console import console
from starter.cli.main import cli
from starter.service import changes

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables as on a wide terminal, so assertions see whole cells."""
    monkeypatch.setattr(console, "_width", 200)


def run(command: str) -> Result:
    return runner.invoke(cli, shlex.split(command))


def ok(command: str) -> Result:
    result = run(command)
    assert result.exit_code == 0, result.output
    return result


def counts(catalogue: Store) -> tuple[int, ...]:
    """Rows of every table a command could write."""
    with catalogue.session() as session:
        return tuple(session.exec(select(func.count()).select_from(table)).one()
                     for table in (Application, Environment, Change, Release, Baseline,
                                   AuditEvent))


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ReleaseRequest]:
    """Requests that would have started a ReleaseWorkflow."""
    requests: list[ReleaseRequest] = []

    async def record(request: ReleaseRequest, wait: bool) -> None:
        requests.append(request)

    monkeypatch.setattr("starter.cli.release.run_release", record)
    monkeypatch.setattr("starter.cli.controls.run_release", record)
    return requests


def seed_release(catalogue: Store, env_type: str, version: int, *, image: str = "",
                 state: ReleaseState = ReleaseState.SUCCEEDED, change_id: int | None = None,
                 rollback_to: int | None = None) -> Release:
    """What a finished ReleaseWorkflow leaves behind: the release and, on success, its baseline."""
    with catalogue.session() as session:
        env = session.exec(select(Environment).where(Environment.env_type == env_type)).one()
        release = Release(app_id=env.app_id, env_id=env.id or 0, change_id=change_id,
                          workflow_id=f"release:shop:{env.name}", run_id=f"run-{env_type}-"
                          f"{version}-{state}", state=state, from_version=version - 1,
                          to_version=version, image=image or f"reg/shop:{version}",
                          requested_by="ann", rollback_to=rollback_to)
        session.add(release)
        session.flush()
        if state == ReleaseState.SUCCEEDED:
            session.add(Baseline(env_id=env.id or 0, version=version, image=release.image,
                                 digest=f"sha256:{version:064d}", replicas=2 + version // 3,
                                 memory="256Mi" if version < 3 else "512Mi",
                                 release_id=release.id))
        if change_id is not None:
            change = session.get(Change, change_id)
            assert change is not None
            change.state = (ChangeState.RELEASED if state == ReleaseState.SUCCEEDED
                            else ChangeState.DEVELOPING)
            session.add(change)
        session.commit()
        return release


@pytest.fixture
def shop(store: Store) -> Store:  # noqa: F811
    """shop (ready, approver lead) with prod@local (4 replicas, 3 baselines) and test@local."""
    ok("app register shop --ready --approver lead --tier core")
    ok("env add shop prod --replicas 4")
    ok("env add shop test")
    for version in (1, 2, 3):
        seed_release(store, "prod", version)
    return store


# ---------------------------------------------------------------- env add: rollout policy


def test_env_add_rollout_policy_defaults_and_options(store: Store) -> None:  # noqa: F811
    ok("app register shop --ready")
    added = ok("env add shop prod --replicas 4 --steps 1,gate,50%,100% --stable 2m "
               "--approval required --approval-timeout 1h").stdout
    assert "gray 1,gate,50%,100%, stable 2m, approval required" in added
    ok("env add shop test")
    ok("env add shop stage --strategy rolling --replicas 6 --batch-size 2 --stable 0")
    with store.session() as session:
        envs = {e.env_type: e for e in session.exec(select(Environment)).all()}
    prod, test, stage = envs["prod"], envs["test"], envs["stage"]
    assert (prod.strategy, prod.gray_steps, prod.stable_seconds) == ("gray",
                                                                     ["1", "gate", "50%", "100%"],
                                                                     120)
    assert (prod.approval, prod.approval_timeout_seconds) == ("required", 3600)
    assert (test.strategy, test.approval, test.approval_timeout_seconds) == ("recreate", "auto",
                                                                             86400)
    assert (stage.strategy, stage.batch_size, stage.stable_seconds) == ("rolling", 2, 0)
    shown = ok("env show shop prod").stdout
    for words in ("gray", "1,gate,50%,100%", "2m", "required", "1h"):
        assert words in shown
    with store.session() as session:
        event = session.exec(select(AuditEvent).where(AuditEvent.env == "prod@local")).one()
    assert event.detail["strategy"] == "gray" and event.detail["approval"] == "required"


# ---------------------------------------------------------------- changes


def test_change_lifecycle(shop: Store, started: list[ReleaseRequest]) -> None:
    created = ok("change create shop prod --image reg/shop:4 --note 'fix the cart'").stdout
    assert "created change 1 (code: reg/shop:4) for shop prod@local, developing" in created
    ok("change create shop prod --kind scale --replicas 6")
    ok("change create shop test --kind resources --cpu 500m --memory 1Gi")
    listing = ok("change list shop").stdout
    assert "scale" in listing and "resources" in listing and "test@local" in listing
    assert "cpu → 500m memory → 1Gi" in ok("change show 3").stdout
    assert "developing → ready_to_release" in ok("change submit 1").stdout
    shown = ok("change show 1").stdout
    assert "ready_to_release" in shown and "fix the cart" in shown
    assert "--change 1" in shown
    assert "developing → closed" in ok("change close 3").stdout

    ok("release shop prod --change 1 --wait")
    assert started[-1].model_dump(exclude_defaults=True) == {
        "app": "shop", "env": "prod@local", "image": "reg/shop:4", "requested_by": "tester",
        "change_id": 1,
    }
    # A scale change runs what runs now (the current baseline's image) with new numbers.
    ok("change submit 2")
    ok("release shop prod@local --change 2")
    assert (started[-1].image, started[-1].replicas, started[-1].change_id) == ("reg/shop:3",
                                                                                6, 2)
    with shop.session() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions.count("change.created") == 3 and "change.submitted" in actions
    assert "change.closed" in actions


def test_a_rejected_release_lets_the_change_go_again(shop: Store) -> None:
    ok("change create shop prod --image reg/shop:4")
    ok("change submit 1")
    seed_release(shop, "prod", 4, state=ReleaseState.REJECTED, change_id=1)
    ok("change submit 1")  # back in developing after the rejection
    request = changes.change_release_request(shop, 1, "tester")
    assert request.change_id == 1
    seed_release(shop, "prod", 4, change_id=1)
    with pytest.raises(CatalogueError, match="already released by release 5"):
        changes.change_release_request(shop, 1, "tester")


# ---------------------------------------------------------------- baselines and history


def test_baselines_list_and_diff(shop: Store) -> None:
    listing = ok("baseline list shop prod").stdout
    assert "v3 (current)" in listing and "reg/shop:1" in listing
    diff = ok("baseline diff shop prod").stdout
    assert "v2" in diff and "v3" in diff and "reg/shop:2" in diff and "512Mi" in diff
    assert changes.diff_baselines(shop, "shop", "prod", 1, 2) == [
        ("image", "reg/shop:1", "reg/shop:2"),
        ("digest", f"sha256:{1:064d}", f"sha256:{2:064d}"),
    ]
    assert changes.diff_versions(shop, "shop", "prod") == (2, 3)
    assert changes.diff_versions(shop, "shop", "prod", 1) == (1, 3)
    assert "are the same" in ok("baseline diff shop prod 2 2").stdout


def test_release_history(shop: Store) -> None:
    seed_release(shop, "prod", 4, state=ReleaseState.ROLLED_BACK)
    seed_release(shop, "prod", 4, image="reg/shop:1", rollback_to=1)
    history = ok("release history shop prod").stdout
    assert "rolled_back" in history and "(rollback to v1)" in history
    rows = changes.release_history(shop, "shop", "prod")
    assert [(r.release.to_version, r.baseline_version) for r in rows] == [
        (4, 4), (4, None), (3, 3), (2, 2), (1, 1)]
    assert "no releases of shop on test" in ok("release history shop test").stdout


# ---------------------------------------------------------------- release routing, rollback


def test_release_default_command_and_options_first(shop: Store,
                                                   started: list[ReleaseRequest]) -> None:
    ok("release shop prod --image reg/shop:9")
    ok("release --image reg/shop:8 shop prod")
    ok("release start shop test --ref main --version 1.2")
    assert [(r.app, r.env, r.image, r.ref) for r in started] == [
        ("shop", "prod", "reg/shop:9", None), ("shop", "prod", "reg/shop:8", None),
        ("shop", "test", None, "main")]
    assert "history" in ok("release --help").stdout


def test_rollback_targets_the_previous_baseline(shop: Store,
                                                started: list[ReleaseRequest]) -> None:
    assert "back to baseline v2" in ok("rollback shop prod").stdout
    ok("rollback shop prod --to 1")
    ok("rollback shop prod --image reg/shop:hotfix")
    assert [(r.rollback_to, r.image) for r in started] == [
        (2, "reg/shop:2"), (1, "reg/shop:1"), (None, "reg/shop:hotfix")]
    assert started[0].env == "prod@local"


def test_rollbacks_are_recorded_counted_and_only_a_recent_one_skips_approval(
        shop: Store, started: list[ReleaseRequest]) -> None:
    """What the release workflow's prepare and finish activities write for both kinds."""
    ok("change create shop prod --image reg/shop:4")
    ok("change submit 1")
    seed_release(shop, "prod", 4, change_id=1)  # v4 came from change 1
    told = ok("rollback shop prod --image reg/shop:hotfix").stdout
    assert "releases reg/shop:hotfix like any release: it waits for an approver (lead)" in told
    assert "canary analysis and waits out freezes" in told
    told = ok("rollback shop prod --to 2").stdout
    assert "v2 is a recent baseline" in told and "freezes do not hold it" in told
    for number, request in enumerate(started):
        assert request.is_rollback
        plan = open_release(shop, PrepareReleaseInput(
            request=request, workflow_id="release:shop:prod@local", run_id=f"rollback-{number}"),
            drain_timeout_seconds=1, progress_deadline_seconds=1)
        # shop is core in prod (approval auto): an emergency rollback to a recent baseline
        # does not wait; `rollback --image` is a release like any other, and does.
        assert plan.approval_required == (request.rollback_to is None)
        target = plan.target or ImageSpec(image="reg/shop:hotfix")
        finish_release(shop, FinishReleaseInput(
            release_id=plan.release_id, state=ReleaseState.SUCCEEDED,
            image=ImageSpec(image=target.image, digest=target.digest or "sha256:" + "f" * 64)))
    with shop.session() as session:
        newest = session.exec(select(Baseline).order_by(col(Baseline.version).desc())).all()
        change = session.get(Change, 1)
    assert [(b.version, b.image, b.rolled_back_from) for b in newest[:2]] == [
        (6, "reg/shop:2", 5), (5, "reg/shop:hotfix", 4)]
    assert change is not None and change.rollback_count == 1  # v4's change, once
    history = ok("release history shop prod").stdout
    assert "(rollback of v4)" in history and "(rollback to v2)" in history


def test_a_rollback_to_an_old_baseline_needs_a_second_approver(
        shop: Store, started: list[ReleaseRequest], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_ROLLBACK_RECENT_BASELINES", "1")
    get_settings.cache_clear()
    told = ok("rollback shop prod --to 1").stdout  # v2 and v3 came after v1
    assert ("v1 is not a recent baseline (one of the last 1 baselines before the current, "
            "replaced less than 24h ago): the rollback waits for an approver other than you "
            "(lead)") in told
    [request] = started
    plan = open_release(shop, PrepareReleaseInput(
        request=request, workflow_id="release:shop:prod@local", run_id="old"),
        drain_timeout_seconds=1, progress_deadline_seconds=1,
        rollbacks=RecentRollbacks(baselines=1))
    assert plan.approval_required and not plan.rollback_recent and not plan.fast_rollback


def test_an_old_rollback_by_the_only_approver_is_refused_and_writes_nothing(
        shop: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_USER", "lead")  # the app's only approver
    monkeypatch.setenv("SLIPWAY_ROLLBACK_RECENT_BASELINES", "1")
    get_settings.cache_clear()
    before = counts(shop)
    result = run("rollback shop prod --to 1")
    assert result.exit_code == 1
    assert "a rollback of shop@prod@local to v1 needs approval" in result.stderr
    assert "no approver besides lead" in result.stderr
    assert counts(shop) == before


def test_rollback_with_one_baseline(shop: Store) -> None:
    seed_release(shop, "test", 1)
    before = counts(shop)
    result = run("rollback shop test")
    assert result.exit_code == 1
    assert "only baseline v1: there is no older baseline" in result.stderr
    assert counts(shop) == before


def _released_change(catalogue: Store) -> None:
    ok("change create shop prod --image reg/shop:4")
    ok("change submit 1")
    seed_release(catalogue, "prod", 4, change_id=1)
    ok("change create shop prod --image reg/shop:5")
    ok("change submit 2")
    ok("change create shop test --image reg/shop:5")


BAD_INPUT: list[Any] = [
    # env add
    pytest.param("env add shop dev --strategy gray --steps 0", ["gray step '0'", "between 1"],
                 id="step-0"),
    pytest.param("env add shop dev --strategy gray --steps 150%",
                 ["'150%'", "between 1% and 100%"], id="step-150%"),
    pytest.param("env add shop dev --strategy gray --replicas 4 --steps 1,50%",
                 ["last gray step is '50%'", "100%", "(or 4"], id="steps-not-reaching-100%"),
    pytest.param("env add shop dev --strategy gray --replicas 2 --steps 3,100%",
                 ["gray step '3'", "(2)"], id="step-above-replicas"),
    pytest.param("env add shop dev --strategy gray --steps gate", ["at least one step"],
                 id="only-gates"),
    pytest.param("env add shop dev --strategy gray --steps 1,,100%", ["invalid gray step ''"],
                 id="empty-step"),
    pytest.param("env add shop dev --steps 1,100%", ["gray strategy only", "recreate"],
                 id="steps-without-gray"),
    pytest.param("env add shop dev --strategy blue", ["unknown strategy 'blue'"],
                 id="bad-strategy"),
    pytest.param("env add shop dev --strategy rolling --replicas 4 --batch-size 5",
                 ["batch size", "4", "got 5"], id="batch-above-replicas"),
    pytest.param("env add shop dev --stable 5x", ["invalid --stable '5x'"], id="bad-stable"),
    pytest.param("env add shop dev --approval maybe", ["unknown approval policy 'maybe'"],
                 id="bad-approval"),
    pytest.param("env add shop dev --approval-timeout 10s",
                 ["approval timeout of 10s is out of range", "1m to 30d"],
                 id="approval-timeout-too-short"),
    # changes
    pytest.param("change create shop prod --kind scale --replicas 0",
                 ["replicas must be between 1 and 24, got 0"], id="scale-0"),
    pytest.param("change create shop prod --kind scale --replicas 25",
                 ["replicas must be between 1 and 24, got 25"], id="scale-25"),
    pytest.param("change create shop prod --kind scale", ["needs --replicas"],
                 id="scale-without-replicas"),
    pytest.param("change create shop prod --kind resources", ["needs --cpu and/or --memory"],
                 id="resources-without-values"),
    pytest.param("change create shop prod --kind resources --memory 12XB", ["memory", "12XB"],
                 id="resources-bad-memory"),
    pytest.param("change create shop prod --image a --ref b", ["not both"],
                 id="code-image-and-ref"),
    pytest.param("change create shop prod --kind scale --replicas 2 --image a",
                 ["takes only --replicas", "--image"], id="scale-with-image"),
    pytest.param("change create shop prod --kind hotfix", ["unknown change kind 'hotfix'"],
                 id="bad-kind"),
    pytest.param("change create shop nope --image a", ["no environment 'nope'"],
                 id="change-unknown-env"),
    pytest.param("change show 99", ["change 99 does not exist"], id="unknown-change"),
    pytest.param("change submit 2", ["ready_to_release, not developing"], id="submit-twice"),
    pytest.param("change close 1", ["a released change is kept as an archive"],
                 id="close-released"),
    pytest.param("release shop prod --change 3", ["change 3 is developing",
                                                  "change submit 3"], id="release-unsubmitted"),
    pytest.param("release shop prod --change 1", ["already released by release 4",
                                                  "at most once"], id="release-change-twice"),
    pytest.param("release shop test --change 2", ["belongs to shop prod@local, not shop test"],
                 id="release-change-wrong-env"),
    pytest.param("release shop prod --change 2 --image x", ["drop --image"],
                 id="release-change-with-image"),
    # baselines and rollback
    pytest.param("baseline diff shop prod 2 9", ["no baseline v9", "v1, v2, v3, v4"],
                 id="diff-missing-version"),
    pytest.param("baseline diff shop test", ["no baseline older", "known: none"],
                 id="diff-no-baselines"),
    pytest.param("rollback shop prod --to 4", ["v4 is the current baseline", "--to 3"],
                 id="rollback-to-current"),
    pytest.param("rollback shop prod --to 9", ["no baseline v9"], id="rollback-to-missing"),
    pytest.param("rollback shop prod --to 1 --image x", ["not both"],
                 id="rollback-to-and-image"),
    pytest.param("rollback shop test", ["nothing has been released", "nothing to roll back"],
                 id="rollback-nothing-released"),
]


@pytest.mark.parametrize(("command", "words"), BAD_INPUT)
def test_bad_input_is_one_line_and_writes_nothing(shop: Store, started: list[ReleaseRequest],
                                                  command: str, words: list[str]) -> None:
    _released_change(shop)
    before = counts(shop)
    result = run(command)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0]
    assert result.stdout == ""
    assert counts(shop) == before
    assert started == []


def test_help_of_every_new_command() -> None:
    for command in ("change create", "change list", "change show", "change submit",
                    "change close", "baseline list", "baseline diff", "release history",
                    "release start", "rollback", "approve", "reject", "promote", "promote-full",
                    "pause", "resume", "abort", "status", "env add"):
        result = ok(f"{command} --help")
        assert "Usage:" in result.stdout, command

