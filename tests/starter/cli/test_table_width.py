"""At 80 columns every table fits: no line is wider, and no word of a sentence is split.

Each table is rendered with realistic long values: a one-sentence ``why``, an image ref with
its digest, a long note. A sentence either wraps at word boundaries in its column or, when the
column would be too narrow, moves below the table as a numbered note; an image ref is one
word longer than the screen, so it may fold, but is never cut short.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console
from sqlmodel import select

from catalogue.analysis import record_measurements
from catalogue.store import Store
from catalogue.tables import AuditEvent, Baseline, Environment, LaneRecord, Release, Train
from schemas.analysis import Measurement, Mode, Verdict
from schemas.enums import ReleaseState
from schemas.lanes import LaneStage, LaneStatus, LedgerEntry, ResourceKind
from schemas.models import ReleaseEvent, ReleaseStatus, VersionStatus
from schemas.trains import TrainEvent, TrainMemberStatus, TrainStatus
from starter.cli import console as cli_console
from starter.cli import lane, train
from starter.cli.fit import FitTable
from starter.cli.status_view import render_status
from tests.support.cli import ok

WIDTH = 80
T0 = datetime(2026, 11, 22, 9, 0, 0, tzinfo=UTC)
DIGEST = "sha256:" + "0123456789abcdef" * 4
IMAGE = f"127.0.0.1:5000/shop@{DIGEST}"
OLD_IMAGE = f"127.0.0.1:5000/shop@sha256:{'fedcba9876543210' * 4}"
WHY = "the canary answered more slowly than its baseline during three intervals in succession"
FAST = "within max 0.05 and at most twice the baseline's error rate"
ERROR = ("health check of v4 failed: the container exited with code 137 before it became "
         "ready, so the release rolled back")
REFUSAL = "mallory may not approve a release she requested herself; ask another approver"
FORBIDDEN = "the token of ci-bot carries no deployer role for shop, so it may not promote"
REASON = "promotion weekend: the payment provider asked every merchant to stop deploying"
MEMBER_ERROR = ("cart@prod@local failed its stable wait: the canary's error rate doubled "
                "while v8 took a third of the traffic, so every member rolled back")


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's console renders as on an 80-column terminal, whatever runs the tests."""
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setattr(cli_console.console, "_width", WIDTH)
    # Nothing listens here: commands that would tell running releases say they could not.
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:1")


def fits(output: str, *sentences: str, names: tuple[str, ...] = (),
         images: tuple[str, ...] = ()) -> None:
    """No line wider than WIDTH; each word of each sentence, and each name, whole on one line;
    no sentence taller than 4 lines; each image whole once the whitespace and borders its
    folds added are taken out."""
    wide = [line for line in output.splitlines() if cell_len(line) > WIDTH]
    assert not wide, f"{len(wide)} lines wider than {WIDTH}:\n{output}"
    for sentence in sentences:
        for word in sentence.split():
            whole(output, word, sentence)
        assert height(output, sentence) <= 4, f"{sentence!r} is too tall:\n{output}"
    for name in names:
        whole(output, name, name)
    for image in images:
        assert any(image in text for text in unfolded(output)), (
            f"{image} is cut short:\n{output}")


def whole(output: str, word: str, where: str) -> None:
    assert re.search(rf"(?<![^\s│┃]){re.escape(word)}(?![^\s│┃,;])", output), (
        f"{word!r} of {where!r} is split or missing:\n{output}")


def unfolded(output: str) -> list[str]:
    """What a fold can have cut: each table column's cells, and the text outside tables,
    joined line after line without their whitespace."""
    columns: dict[int, str] = {}
    rest = ""
    for line in output.splitlines():
        cells = re.split("[│┃]", line)
        if len(cells) == 1:
            rest += re.sub(r"\s", "", line)
        for index, cell in enumerate(cells):
            columns[index] = columns.get(index, "") + re.sub(r"\s", "", cell)
    return [rest, *columns.values()]


def height(output: str, sentence: str) -> int:
    """How many lines the sentence spans (its words found nowhere else mark it)."""
    lines = output.splitlines()
    rows = [index for word in sentence.split() if len(word) > 4 and output.count(word) == 1
            for index, line in enumerate(lines) if word in line]
    return max(rows) - min(rows) + 1 if rows else 0


def printed(capsys: pytest.CaptureFixture[str], call: Any, *args: Any) -> str:
    capsys.readouterr()
    call(*args)
    return capsys.readouterr().out


def measurement(metric: str, mode: Mode, verdict: Verdict, why: str, step: int = 1,
                ) -> Measurement:
    return Measurement(metric=metric, mode=mode, step=step, at=T0 + timedelta(seconds=step),
                       value=0.4321, baseline=0.1234, sample=12345, condition="max 0.05",
                       verdict=verdict, detail=why)


MEASUREMENTS = [measurement("p95_latency", Mode.ADVISORY, Verdict.INCONCLUSIVE, WHY),
                measurement("error_rate", Mode.ENFORCING, Verdict.PASSED, FAST, step=2)]


def test_status_view(monkeypatch: pytest.MonkeyPatch) -> None:
    status = ReleaseStatus(
        app="shop", env="prod@local", stage="waiting_stable", strategy="gray",
        from_version=3, to_version=4, image=IMAGE, step=2, steps=3, requested_by="bob",
        approvers=["lead"], analysis=MEASUREMENTS,
        versions=[VersionStatus(version=4, desired=2, ready=1, traffic_percent=33.3),
                  VersionStatus(version=3, desired=4, ready=4, traffic_percent=66.7)],
        events=[ReleaseEvent(at=T0, message=f"v4 runs {IMAGE} on 2 replicas"),
                ReleaseEvent(at=T0, message=ERROR)])
    console = Console(record=True, width=WIDTH, color_system=None)
    console.print(render_status("shop@prod@local", "running", status,
                                "http://localhost:8233/namespaces/default/workflows/"
                                "release:shop:prod@local"))
    fits(console.export_text(), WHY, FAST, ERROR, images=(IMAGE,))


@pytest.fixture
def released(populated: Store) -> Iterator[Store]:
    """shop on prod@local: a failed release with a long error, a rollback that succeeded,
    their baselines, canary analysis, and a refused approval."""
    with populated.session() as session:
        env = session.exec(select(Environment).where(Environment.app_id == 1)).one()
        first = Release(app_id=env.app_id, env_id=env.id or 0, workflow_id="w", run_id="r1",
                        state=ReleaseState.FAILED, from_version=3, to_version=4, image=IMAGE,
                        requested_by="mallory", approved_by="alice-from-platform",
                        error=ERROR, started_at=T0)
        second = Release(app_id=env.app_id, env_id=env.id or 0, workflow_id="w", run_id="r2",
                         state=ReleaseState.SUCCEEDED, from_version=4, to_version=5,
                         image=OLD_IMAGE, requested_by="bob", rollback_to=3, rollback=True,
                         started_at=T0 + timedelta(hours=1))
        session.add_all([first, second])
        session.flush()
        session.add_all([
            Baseline(env_id=env.id or 0, version=3, image=IMAGE, digest=DIGEST, replicas=4,
                     cpu="500m", memory="256Mi", created_at=T0),
            Baseline(env_id=env.id or 0, version=5, image=OLD_IMAGE, digest=DIGEST,
                     replicas=4, cpu="1", memory="1Gi", release_id=second.id,
                     rolled_back_from=4, created_at=T0 + timedelta(hours=1)),
            AuditEvent(actor="mallory", action="release.refused", app="shop", env="prod@local",
                       at=T0, detail={"refused": "approve", "door": "cli", "reason": REFUSAL}),
            AuditEvent(actor="ci-bot", action="api.refused", app="shop", env="prod", at=T0,
                       detail={"method": "POST", "path": "/releases/shop/prod@local/promote",
                               "reason": FORBIDDEN}),
        ])
        session.commit()
        release_id = first.id or 0
    record_measurements(populated, release_id, MEASUREMENTS)
    yield populated


def test_release_history(released: Store) -> None:
    fits(ok("release history shop prod").stdout, ERROR, REFUSAL, FORBIDDEN,
         names=("/releases/shop/prod@local/promote", "alice-from-platform", "succeeded"),
         images=(IMAGE, OLD_IMAGE))


def test_change_calendar(released: Store) -> None:
    with released.session() as session:
        for item in session.exec(select(Release)).all():
            item.started_at = datetime.now(UTC)
        session.commit()
    fits(ok("release history --all --since 1d").stdout,
         names=("prod@local", "alice-from-platform", "succeeded", "rollback"),
         images=(IMAGE, OLD_IMAGE))


def test_release_show(released: Store) -> None:
    fits(ok("release show shop prod --id 1").stdout, WHY, FAST, ERROR, images=(IMAGE,))


def test_baseline_list_and_diff(released: Store) -> None:
    fits(ok("baseline list shop prod").stdout, images=(IMAGE, OLD_IMAGE))
    fits(ok("baseline diff shop prod 3 5").stdout, images=(IMAGE, OLD_IMAGE))


def test_freeze_list(store: Store) -> None:
    ok("freeze add prod --from '2026-12-04 18:00' --rrule "
       "'FREQ=WEEKLY;BYDAY=FR,SA,SU;BYHOUR=18' --duration 60h --tz America/Argentina/Buenos_Aires "
       f"--reason '{REASON}'")
    fits(ok("freeze list").stdout, REASON,
         names=("FREQ=WEEKLY;BYDAY=FR,SA,SU;BYHOUR=18", "America/Argentina/Buenos_Aires"))


def test_train_list_and_status(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    members = [TrainMemberStatus(app="shop", env="prod@local", state="succeeded",
                                 from_version=3, to_version=4, rollback="succeeded"),
               TrainMemberStatus(app="cart", env="prod@local", state="failed",
                                 from_version=7, error=MEMBER_ERROR)]
    with store.session() as session:
        session.add(Train(name="payday-2026-12", workflow_id="train:payday", run_id="t1",
                          state=ReleaseState.ROLLED_BACK, members=[m.model_dump() for m in members],
                          requested_by="bob.smith", approved_by="alice.wong",
                          rollback_of=None, error=MEMBER_ERROR, started_at=T0))
        session.commit()
    fits(ok("train list").stdout, names=("payday-2026-12", "rolled_back", "cart@prod@local",
                                         "alice.wong"))
    status = TrainStatus(app="payday-2026-12", stage="rolling_back", members=members,
                         events=[TrainEvent(at=T0, message="cart@prod@local failed: rolling "
                                                          "back shop@prod@local to v3")])
    fits(printed(capsys, train._print, status), MEMBER_ERROR,
         names=("shop@prod@local", "cart@prod@local", "succeeded"))


def test_lane_list_and_show(store: Store, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    ticket = "https://jira.example.com/browse/CHECKOUT-4711"
    ledger = [
        LedgerEntry(kind=ResourceKind.NAMESPACE, key="checkout-redesign",
                    detail={"runtime": "docker", "created": False,
                            "scope": "label slipway.lane=checkout-redesign"}),
        LedgerEntry(kind=ResourceKind.BRANCH, key="feature/checkout-redesign", app="shop",
                    detail={"skipped": "GitLab not configured or the app's source is not "
                                       "on it"}),
        LedgerEntry(kind=ResourceKind.DEPLOYMENT, key="shop", app="shop",
                    detail={"runtime": "docker", "env_key": "lane-checkout-redesign-shop",
                            "image": IMAGE, "version": 1,
                            "url": "http://127.0.0.1:30001/"}),
    ]
    running = LaneStatus(name="checkout-redesign", apps=["shop", "cart", "payments", "mail"],
                         stage=LaneStage.PENDING_DELETION, expires_at=T0, ledger=ledger,
                         ticket=ticket)
    with store.session() as session:
        session.add(LaneRecord(name="search-ranking-v2", workflow_id="lane:x",
                               apps=["search", "catalogue", "recommendations"],
                               stage="teardown_failed", ticket=ticket, updated_at=T0))
        session.commit()
    monkeypatch.setattr(lane, "_with_client", lambda call: [running])
    fits(ok("lane list --all").stdout,
         names=("checkout-redesign", "search-ranking-v2", "pending_deletion",
                "teardown_failed", "recommendations"), images=(ticket,))
    fits(printed(capsys, lane._show, running),
         "skipped=GitLab not configured or the app's source is not on it",
         names=("feature/checkout-redesign", "env_key=lane-checkout-redesign-shop"),
         images=(IMAGE,))


def test_a_wide_terminal_keeps_the_text_in_the_table(released: Store,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_console.console, "_width", 200)
    shown = ok("release history shop prod").stdout
    # Room enough: the image whole on one line, the note wrapped in its cell, no notes below.
    assert "[1]" not in shown and IMAGE in shown
    assert max(cell_len(line) for line in shown.splitlines()) <= 200
    for word in ERROR.split():
        whole(shown, word, ERROR)
    assert height(shown, ERROR) <= 4


def test_free_text_is_not_markup_and_blank_cells_make_no_note() -> None:
    table = FitTable()
    table.add_column("id")
    table.add_column("reason", "text")
    table.add_row("1", f"[prod] {REASON}")
    table.add_row("2", "-")
    console = Console(record=True, width=WIDTH, color_system=None)
    console.print(table)
    shown = console.export_text()
    fits(shown, f"[prod] {REASON}")
    assert "[2]" not in shown
