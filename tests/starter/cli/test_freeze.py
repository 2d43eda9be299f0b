"""``slipway freeze`` and the release options it governs: --no-wait and --break-glass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from catalogue.store import Store
from catalogue.tables import AuditEvent, FreezeRecord, Release
from starter.service.tokens import create_token
from tests.support.cli import ok, run


@pytest.fixture(autouse=True)
def no_temporal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens here: commands that would tell running releases say they could not.
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:1")


def token_of(store: Store, monkeypatch: pytest.MonkeyPatch, *roles: str,
             user: str = "tester") -> str:
    """A token of ``user`` with ``roles``, given to the CLI as SLIPWAY_TOKEN."""
    _, token = create_token(store, user, name=f"{user}-{'-'.join(roles)}", roles=list(roles))
    monkeypatch.setenv("SLIPWAY_TOKEN", token)
    return token


@pytest.fixture
def freeze_admin(store: Store, monkeypatch: pytest.MonkeyPatch) -> str:
    """tester acts with a token carrying freeze-admin."""
    return token_of(store, monkeypatch, "freeze-admin")


def test_a_recurring_freeze_is_listed_in_its_time_zone_and_removed(store: Store,
                                                                     freeze_admin: str) -> None:
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
    store: Store, freeze_admin: str, words: str, message: str,
) -> None:
    result = run(words)
    assert result.exit_code == 1 and message in result.output, result.output
    with store.session() as session:
        assert session.exec(select(FreezeRecord)).all() == []


def test_no_wait_into_an_incident_freeze_is_refused_and_writes_nothing(
        store: Store, freeze_admin: str) -> None:
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


def test_break_glass_needs_a_reason_and_a_second_approver(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    token_of(store, monkeypatch, "break-glass")
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


def test_lifting_a_freeze_needs_a_token_with_the_freeze_admin_role(
        store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ok("freeze now --reason 'db failover'")
    none = run("freeze remove 1")
    assert none.exit_code == 1
    assert ("lifting a freeze needs an API token with the freeze-admin role: an admin creates "
            "one with `slipway token create tester --role freeze-admin`"
            ) in " ".join(none.output.split())
    token_of(store, monkeypatch, "read", "release", "approve")  # the default roles
    approver = run("freeze remove 1")
    assert approver.exit_code == 1
    assert ("lifting a freeze needs the freeze-admin role; token tester-read-release-approve "
            "of tester has approve, read, release") in " ".join(approver.output.split())
    monkeypatch.setenv("SLIPWAY_TOKEN", "slw_not-a-token")
    assert "unknown or revoked" in run("freeze remove 1").output
    someone_else = token_of(store, monkeypatch, "freeze-admin", user="sre")
    other = run("freeze remove 1")
    assert other.exit_code == 1
    assert "the token given acts as sre, but you act as tester: use your own token" in (
        other.output)
    with store.session() as session:
        assert len(session.exec(select(FreezeRecord)).all()) == 1  # still in force
        refused = session.exec(select(AuditEvent).where(
            AuditEvent.action == "cli.refused")).all()
    assert len(refused) == 4 and all("slw_" not in json.dumps(e.detail) for e in refused)
    # The right token: lifted, recorded as its user.
    monkeypatch.setenv("SLIPWAY_TOKEN", someone_else)
    monkeypatch.setenv("SLIPWAY_USER", "sre")
    assert "removed #1" in ok("freeze remove 1").output
    with store.session() as session:
        assert session.exec(select(FreezeRecord)).all() == []
        removed = session.exec(select(AuditEvent).where(
            AuditEvent.action == "freeze.removed")).one()
    assert removed.actor == "sre"


def test_break_glass_needs_a_token_with_the_break_glass_role(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ok("app register shop --ready --approver tester --approver lead")
    ok("env add shop prod --strategy recreate")
    ok("freeze now --reason 'db failover'")
    none = run("release shop prod --image slipway/shop:2 --break-glass 'hotfix'")
    assert none.exit_code == 1
    assert ("--break-glass needs an API token with the break-glass role: an admin creates one "
            "with `slipway token create tester --role break-glass`"
            ) in " ".join(none.output.split())
    token_of(store, monkeypatch, "read", "release", "approve", "freeze-admin")
    lacking = run("release shop prod --image slipway/shop:2 --break-glass 'hotfix'")
    assert lacking.exit_code == 1 and "needs the break-glass role" in lacking.output
    token_of(store, monkeypatch, "break-glass")
    allowed = run("release shop prod --image slipway/shop:2 --break-glass 'hotfix'")
    # Past the role and the catalogue's checks: only Temporal is missing here.
    assert "cannot reach Temporal" in allowed.output, allowed.output
    with store.session() as session:
        assert session.exec(select(Release)).all() == []
