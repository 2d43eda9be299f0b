"""Authorization per application in the CLI: teams of applications (`app register --team`,
`app show`, `app set-team`), tokens limited with `token create --app/--team`, and the
token-using commands (approve/reject, freeze remove, release --break-glass) refusing early,
before anything reaches Temporal, when the token's scope leaves the application out."""

from __future__ import annotations

import json

import pytest
from sqlmodel import col, select

from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, FreezeRecord
from catalogue.tokens import ApiToken
from starter.service.tokens import create_token
from tests.support.cli import ok, run


@pytest.fixture(autouse=True)
def no_temporal(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens here: a command that got past its checks says it cannot reach Temporal.
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", "127.0.0.1:1")


@pytest.fixture
def teams(store: Store) -> Store:
    """pay-api and pay-web of team payments, shop of team retail, each with prod; tester and
    lead approve all of them."""
    for name, team in (("pay-api", "payments"), ("pay-web", "payments"), ("shop", "retail")):
        ok(f"app register {name} --team {team} --ready --approver tester --approver lead")
        ok(f"env add {name} prod")
    return store


def use_token(store: Store, monkeypatch: pytest.MonkeyPatch, name: str, *, roles: list[str],
              teams: list[str] | None = None, apps: list[str] | None = None) -> str:
    _, token = create_token(store, "tester", name=name, roles=roles, teams=teams, apps=apps)
    monkeypatch.setenv("SLIPWAY_TOKEN", token)
    return token


def cli_refusals(store: Store) -> list[AuditEvent]:
    with store.session() as session:
        return list(session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "cli.refused")).all())


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_an_application_has_a_team_shown_and_changed(store: Store) -> None:
    ok("app register shop --team retail")
    assert "tier non-core team retail owners tester" in one_line(ok("app show shop").stdout)
    bad = run("app register pay --team 'Pay Ments'")
    assert bad.exit_code == 1 and "invalid team 'Pay Ments'" in bad.output
    assert "shop: team retail → payments" in ok("app set-team shop payments").stdout
    with store.session() as session:
        assert session.exec(select(Application)).one().team == "payments"
        changed = session.exec(select(AuditEvent).where(
            AuditEvent.action == "app.team_changed")).one()
    assert changed.detail == {"team": "payments", "previous": "retail"}


def test_token_create_limits_a_token_to_apps_and_teams(teams: Store) -> None:
    made = ok("token create lead --name lead-pay --team payments --app shop --role approve")
    assert "token lead-pay for lead, for team payments and application shop" in one_line(
        made.stdout)
    assert "for every application" in one_line(ok("token create lead").stdout)
    with teams.session() as session:
        rows = {row.name: row for row in session.exec(select(ApiToken)).all()}
    assert (rows["lead-pay"].apps, rows["lead-pay"].teams) == ("shop", "payments")
    assert (rows["lead"].apps, rows["lead"].teams) == ("", "")
    unknown = run("token create lead --name x --app nope")
    assert unknown.exit_code == 1 and "unknown application 'nope'" in unknown.output
    typo = run("token create lead --name y --team paymnets")
    assert typo.exit_code == 1 and "no application belongs to team paymnets" in typo.output
    assert "--app" in run("token create --help").output
    assert "--team" in run("token create --help").output


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_approve_with_another_teams_token_is_refused_before_temporal(
        teams: Store, monkeypatch: pytest.MonkeyPatch, decision: str) -> None:
    token = use_token(teams, monkeypatch, "tester-pay", roles=["approve"], teams=["payments"])
    refused = run(f"{decision} shop prod")
    assert refused.exit_code == 1
    assert (f"{decision} of shop: token tester-pay of tester is limited to team payments: "
            "application shop (team retail) is outside its scope") in one_line(refused.output)
    assert "cannot reach Temporal" not in refused.output
    [event] = cli_refusals(teams)
    assert (event.actor, event.app) == ("tester", "shop")
    assert token not in json.dumps(event.detail)
    # The team's token gets past the check for each app of the team (then needs Temporal),
    # and so does a token made without a scope.
    for app in ("pay-api", "pay-web"):
        assert "cannot reach Temporal" in run(f"{decision} {app} prod").output
    use_token(teams, monkeypatch, "tester", roles=["approve"])
    assert "cannot reach Temporal" in run(f"{decision} shop prod").output
    assert len(cli_refusals(teams)) == 1


def test_freeze_remove_needs_a_token_covering_every_application_the_freeze_holds(
        teams: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ok("freeze now --reason 'db failover'")  # every prod: payments' and retail's apps
    use_token(teams, monkeypatch, "tester-pay", roles=["freeze-admin"], teams=["payments"])
    refused = run("freeze remove 1")
    assert refused.exit_code == 1
    assert ("lifting a freeze: token tester-pay of tester is limited to team payments: "
            "application shop (team retail) is outside its scope") in one_line(refused.output)
    with teams.session() as session:
        assert len(session.exec(select(FreezeRecord)).all()) == 1
    [event] = cli_refusals(teams)
    assert event.detail["role"] == "freeze-admin"
    use_token(teams, monkeypatch, "tester-all", roles=["freeze-admin"],
              teams=["payments", "retail"])
    assert "removed #1" in ok("freeze remove 1").output


def test_break_glass_needs_a_token_covering_the_application(
        teams: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    ok("freeze now --reason 'db failover'")
    use_token(teams, monkeypatch, "tester-shop", roles=["break-glass"], apps=["shop"])
    refused = run("release pay-api prod --image slipway/pay:2 --break-glass 'hotfix'")
    assert refused.exit_code == 1
    assert ("--break-glass: token tester-shop of tester is limited to application shop: "
            "application pay-api (team payments) is outside its scope") in one_line(
        refused.output)
    assert "cannot reach Temporal" not in refused.output
    allowed = run("release shop prod --image slipway/shop:2 --break-glass 'hotfix'")
    assert "outside its scope" not in allowed.output
    assert "cannot reach Temporal" in allowed.output, allowed.output
