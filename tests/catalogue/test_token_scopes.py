"""Authorization per application at approval verification (catalogue/approvals.py): a proof
counts only when the token that signed it covers the release's application (a train's: every
member's), whatever the approver list says; tokens made without a scope cover everything."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlmodel import col, select

from catalogue.approvals import approval_apps, check_approval
from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Environment, Release, Train
from catalogue.tokens import ApprovalUse
from schemas.approvals import release_subject, sign_proof, train_subject
from schemas.enums import AppState
from schemas.models import VerifyApprovalInput
from schemas.scopes import TokenScope, out_of_scope
from starter.service.tokens import create_token, hash_token

SECRET = "scope-test-signing-secret"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """pay-api and pay-web of team payments, shop of team retail, tool of no team; the lead
    is an approver of every one of them."""
    catalogue = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    with catalogue.session() as session:
        for port, (name, team) in enumerate((("pay-api", "payments"), ("pay-web", "payments"),
                                             ("shop", "retail"), ("tool", ""))):
            app = Application(name=name, team=team, state=AppState.ONLINE, approvers=["lead"])
            session.add(app)
            session.flush()
            session.add(Environment(app_id=app.id or 0, env_type="prod", cluster="local",
                                    lb_port=21000 + port))
        session.commit()
    return catalogue


def approval(token: str, app: str, user: str = "lead") -> VerifyApprovalInput:
    """``user``'s approval of a run of ``app``'s prod release, signed with ``token``."""
    subject = release_subject(f"release:{app}:prod@local", uuid.uuid4().hex, f"reg/{app}:2",
                              "", None)
    proof = sign_proof(SECRET, hash_token(token), user, subject, "approve", "cli", time.time())
    return VerifyApprovalInput(proof=proof, user=user, release=subject.workflow_id,
                               decision="approve", app=app, env="prod@local", subject=subject)


def spent(store: Store) -> int:
    with store.session() as session:
        return len(session.exec(select(ApprovalUse)).all())


def test_a_scope_describes_itself_and_covers_its_apps_and_teams() -> None:
    assert TokenScope().everything and TokenScope().covers("anything")
    scope = TokenScope(apps=frozenset({"tool"}), teams=frozenset({"payments"}))
    assert scope.describe() == "team payments and application tool"
    assert scope.covers("tool") and scope.covers("pay-api", "payments")
    assert not scope.covers("shop", "retail") and not scope.covers("pay-api")  # no team known
    assert TokenScope(apps=frozenset({"a", "b"})).describe() == "applications a, b"
    reason = out_of_scope("lead-pay", "lead", TokenScope(teams=frozenset({"payments"})),
                          [("shop", "retail")])
    assert reason == ("token lead-pay of lead is limited to team payments: application shop "
                      "(team retail) is outside its scope; use a token whose scope covers it "
                      "(an admin creates one with `slipway token create lead --name "
                      "lead-retail --team retail`)")


def test_a_team_a_token_cannot_approve_a_team_b_release_even_as_its_approver(
    store: Store,
) -> None:
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    refused = check_approval(store, approval(payments, "shop"), time.time(), SECRET)
    assert not refused.ok
    assert refused.reason == (
        "lead's approve cannot count: token lead-pay of lead is limited to team payments: "
        "application shop (team retail) is outside its scope; use a token whose scope covers "
        "it (an admin creates one with `slipway token create lead --name lead-retail --team "
        "retail`)")
    # Nothing spent; the refusal is a release.refused audit event, without the token.
    assert spent(store) == 0
    with store.session() as session:
        [event] = session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "release.refused")).all()
    assert (event.actor, event.app, event.detail["door"]) == ("lead", "shop", "cli")
    assert payments not in str(event.detail) and "outside its scope" in event.detail["reason"]
    # An application of no team is outside a team's scope too.
    assert "application tool (no team)" in check_approval(
        store, approval(payments, "tool"), time.time(), SECRET).reason


def test_a_team_token_approves_every_app_of_its_team_and_an_unscoped_one_any(
    store: Store,
) -> None:
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, everything = create_token(store, "lead", name="lead")  # no --app, no --team
    _, tool_only = create_token(store, "lead", name="lead-tool", apps=["tool"])
    for app in ("pay-api", "pay-web"):
        assert check_approval(store, approval(payments, app), time.time(), SECRET).ok
    for app in ("pay-api", "shop", "tool"):
        assert check_approval(store, approval(everything, app), time.time(), SECRET).ok
    assert check_approval(store, approval(tool_only, "tool"), time.time(), SECRET).ok
    assert not check_approval(store, approval(tool_only, "pay-api"), time.time(), SECRET).ok
    assert spent(store) == 6


def test_the_release_row_of_the_run_names_the_app_not_what_the_input_says(
    store: Store,
) -> None:
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    data = approval(payments, "shop")
    assert data.subject is not None
    with store.session() as session:
        shop = session.exec(select(Application).where(Application.name == "shop")).one()
        env = session.exec(select(Environment).where(Environment.app_id == shop.id)).one()
        session.add(Release(app_id=shop.id or 0, env_id=env.id or 0,
                            workflow_id=data.release, run_id=data.subject.run_id,
                            to_version=2))
        session.commit()
    # An input claiming another application does not move the release out of team retail.
    claimed = data.model_copy(update={"app": "pay-api"})
    assert approval_apps(store, claimed) == ["shop"]
    assert not check_approval(store, claimed, time.time(), SECRET).ok


def test_a_train_needs_a_token_covering_every_members_app(store: Store) -> None:
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, both = create_token(store, "lead", name="lead-both", teams=["payments", "retail"])

    def train(token: str, apps: list[str], recorded: bool) -> VerifyApprovalInput:
        run_id = uuid.uuid4().hex
        if recorded:  # prepare_train's row: what the verifier reads first
            with store.session() as session:
                session.add(Train(name="payday", workflow_id="train:payday", run_id=run_id,
                                  members=[{"app": app, "env": "prod@local"} for app in apps]))
                session.commit()
        subject = train_subject("train:payday", run_id, 1, [f"{a}@prod@local" for a in apps])
        proof = sign_proof(SECRET, hash_token(token), "lead", subject, "approve", "cli",
                           time.time())
        return VerifyApprovalInput(proof=proof, user="lead", release="train:payday",
                                   decision="approve", app="payday", env="train",
                                   subject=subject)

    for recorded in (True, False):
        mixed = train(payments, ["pay-api", "shop"], recorded)
        assert approval_apps(store, mixed) == ["pay-api", "shop"]
        refused = check_approval(store, mixed, time.time(), SECRET)
        assert not refused.ok and "application shop (team retail)" in refused.reason
        assert check_approval(store, train(payments, ["pay-api", "pay-web"], recorded),
                              time.time(), SECRET).ok
        assert check_approval(store, train(both, ["pay-api", "shop"], recorded),
                              time.time(), SECRET).ok
