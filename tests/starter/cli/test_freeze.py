"""``slipway freeze`` and the release options it governs: --no-wait and --break-glass."""

from __future__ import annotations

import pytest
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import AuditEvent, FreezeRecord, Release
from tests.support.cli import ok, run


@pytest.fixture(autouse=True)
def no_temporal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens here: commands that would tell running releases say they could not.
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:1")


def test_a_recurring_freeze_is_listed_in_its_time_zone_and_removed(store: Store) -> None:
    added = ok("freeze add prod --from '2026-12-04 18:00' --rrule 'FREQ=WEEKLY;BYDAY=FR' "
               "--duration 60h --tz Asia/Shanghai --reason 'promotion weekend'").stdout
    assert "#1 freeze prod: FREQ=WEEKLY;BYDAY=FR from 2026-12-04 18:00 Asia/Shanghai, 60h" \
        in added
    ok("freeze add prod@hz --window --from '2026-12-01 10:00' --rrule FREQ=DAILY "
       "--duration 7h")
    listed = ok("freeze list").stdout
    assert "promotion weekend" in listed and "window" in listed and "prod@hz" in listed
    removed = ok("freeze remove 1").output
    assert "removed #1" in removed and "running releases were not told" in removed
    assert "promotion weekend" not in ok("freeze list").stdout
    with store.session() as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions.count("freeze.added") == 2 and "freeze.removed" in actions


@pytest.mark.parametrize(("words", "message"), [
    ("freeze add prod --tz Mars/Base --to '2026-12-05 10:00'", "unknown time zone 'Mars/Base'"),
    ("freeze add prod --rrule FREQ=SOMETIMES --duration 2h", "bad RRULE 'FREQ=SOMETIMES'"),
    ("freeze add prod --rrule FREQ=DAILY", "a recurring rule needs a duration"),
    ("freeze add prod --window", "a deploy window needs an end or a recurrence"),
    ("freeze add 'prod east' --to '2030-01-01'", "scope 'prod east': give an environment type"),
    ("freeze add prod --from 2026-12-05 --to 2026-12-04", "the rule ends before it starts"),
    ("freeze add prod --from tomorrow", "invalid time 'tomorrow'"),
    ("freeze add prod --duration 1y", "invalid duration '1y'"),
    ("freeze remove 42", "no freeze or window #42"),
    ("freeze now --reason ' '", "an incident freeze needs a reason"),
])
def test_bad_rules_are_refused_with_the_fix_and_nothing_stored(
    store: Store, words: str, message: str,
) -> None:
    result = run(words)
    assert result.exit_code == 1 and message in result.output, result.output
    with store.session() as session:
        assert session.exec(select(FreezeRecord)).all() == []


def test_no_wait_into_an_incident_freeze_is_refused_and_writes_nothing(store: Store) -> None:
    ok("app register shop --ready --approver tester --approver lead")
    ok("env add shop prod --strategy recreate")
    declared = ok("freeze now --reason 'db failover'").output
    assert "incident freeze #1 of prod: db failover" in declared
    result = run("release shop prod --image slipway/shop:2 --no-wait")
    assert result.exit_code == 1
    assert ("prod@local is closed for releases: incident freeze of prod by tester: db "
            "failover; it opens when the freeze is lifted") in result.output
    other = run("release shop test --image slipway/shop:2 --no-wait")  # not frozen: no env
    assert "closed for releases" not in other.output
    ok("freeze remove 1")
    opened = run("release shop prod --image slipway/shop:2 --no-wait")
    assert "closed for releases" not in opened.output
    assert "cannot reach Temporal" in opened.output
    with store.session() as session:
        assert session.exec(select(Release)).all() == []


def test_break_glass_needs_a_reason_and_a_second_approver(store: Store) -> None:
    ok("app register shop --ready --approver tester")
    ok("env add shop prod --strategy recreate")
    ok("freeze now --reason 'db failover'")
    alone = run("release shop prod --image slipway/shop:2 --break-glass 'hotfix'")
    assert alone.exit_code == 1
    assert ("break glass on shop@prod@local needs a second approver, and there is none "
            "besides tester (approvers: tester)") in alone.output
    blank = run("release shop prod --image slipway/shop:2 --break-glass ' '")
    assert blank.exit_code == 1 and "break glass needs a reason" in blank.output
    with store.session() as session:
        assert session.exec(select(Release)).all() == []
