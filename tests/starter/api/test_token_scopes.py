"""Authorization per application at the receiver: a token limited to a team (or to named
applications) is refused with 403 on every route that acts on another application — releases,
approvals, approval links, baselines, lanes, freezes — naming the application and the token's
scope; nothing reaches the release, and the refusal is an ``api.refused`` audit event without
the token. Tokens made without a scope act on every application, as before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from catalogue.store import CatalogueError, Store
from catalogue.tables import Application, AuditEvent, Environment
from catalogue.tokens import ApprovalUse
from integrations.notify.links import ApprovalLinks
from schemas.enums import AppState, AppTier, ReleaseState
from schemas.lanes import LaneSpec, lane_workflow_id
from schemas.models import ReleaseRequest
from starter.api.app import create_app
from starter.api.settings import ReceiverSettings
from starter.service.tokens import create_token
from tests.starter.api.test_app import ENV, bearer, receiver, settings, wait_for_stage
from tests.starter.api.test_approval_links import SECRET as LINK_SECRET
from tests.starter.api.test_approval_links import receiver as link_receiver
from tests.starter.api.test_approval_links import receiver_settings
from tests.workflows.fakes import FakeWorld, wait_for, worker
from tests.workflows.lane_fakes import LaneWorld
from workflows.release import ReleaseWorkflow, release_workflow_id
from workflows.swimlane import SwimlaneWorkflow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    catalogue = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    yield catalogue
    catalogue.engine.dispose()


def register(store: Store, team: str, cluster: str = "local") -> str:
    """A fresh core application of ``team`` with a prod environment on ``cluster``."""
    name = f"{team[:4]}-{uuid.uuid4().hex[:8]}"
    with store.session() as session:
        app = Application(name=name, state=AppState.READY, tier=AppTier.CORE, team=team,
                          source="/src/shop", approvers=["lead", "ana"])
        session.add(app)
        session.flush()
        # Catalogue rows only (nothing binds): one port per application, never shared.
        session.add(Environment(app_id=app.id or 0, env_type="prod", cluster=cluster,
                                lb_port=20000 + (app.id or 0)))
        session.commit()
    return name


def refusals(store: Store) -> list[AuditEvent]:
    with store.session() as session:
        return list(session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "api.refused")).all())


async def test_a_team_a_token_is_refused_on_a_team_b_release_and_nothing_is_recorded(
    env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    shop = register(store, "retail")
    pay_api, pay_web = register(store, "payments"), register(store, "payments")
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=settings(tmp_path, "unused").approval_signing_secret())
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, unscoped = create_token(store, "lead")  # made without --app/--team: every app
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=shop, env=ENV, requested_by="ana"),
            id=release_workflow_id(shop, ENV), task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")

        expected = (f"token lead-pay of lead is limited to team payments: application {shop} "
                    "(team retail) is outside its scope")
        for method, path in (("POST", f"/api/releases/{shop}/prod/approve"),
                             ("POST", f"/api/releases/{shop}/prod/reject"),
                             ("POST", f"/api/releases/{shop}/prod/approval-token"),
                             ("GET", f"/api/releases/{shop}/prod"),
                             ("GET", f"/api/baselines/{shop}/prod")):
            answer = await http.request(method, path, headers=bearer(payments), json={})
            assert answer.status_code == 403, (path, answer.text)
            assert answer.json()["detail"].startswith(expected), answer.text
        # Nothing reached the release; each refusal is audited with the app, never the token.
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval" and world.approvals == ["awaiting"]
        assert not [e for e in status.events if "refused" in e.message]
        with store.session() as session:
            assert session.exec(select(ApprovalUse)).all() == []
        audited = refusals(store)
        assert len(audited) == 5 and {(e.actor, e.app, e.detail["status"])
                                      for e in audited} == {("lead", shop, 403)}
        assert all(payments not in str(e.detail) for e in audited)

        # The team's token acts on every application of the team.
        for app in (pay_api, pay_web):
            answer = await http.get(f"/api/baselines/{app}/prod", headers=bearer(payments))
            assert answer.status_code == 200 and answer.json() == []
        # A token made without a scope still approves anything it may by its roles.
        approved = await http.post(f"/api/releases/{shop}/prod/approve",
                                   headers=bearer(unscoped), json={})
        assert approved.status_code == 200, approved.text
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    assert world.approvals == ["awaiting", "lead"]


async def test_an_approval_link_refuses_its_approvers_token_of_another_team(
    env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    shop = register(store, "retail")
    register(store, "payments")
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=receiver_settings(tmp_path).approval_signing_secret())
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, retail = create_token(store, "lead", name="lead-retail", apps=[shop])
    runner, queue = worker(env, world)
    async with runner, link_receiver(env, store, tmp_path) as http:
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=shop, env=ENV, requested_by="ana"),
            id=release_workflow_id(shop, ENV), task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        link = ApprovalLinks("http://receiver", lambda: LINK_SECRET).link(
            "lead", handle.id, handle.result_run_id or "", "approve", 600
        ).removeprefix("http://receiver")
        # lead's own link, with lead's own token — of the payments team: refused.
        refused = await http.post(link, data={"token": payments})
        assert refused.status_code == 403
        assert (f"token lead-pay of lead is limited to team payments: application {shop} "
                "(team retail) is outside its scope") in refused.text
        assert "nothing was recorded" in refused.text
        assert world.approvals == ["awaiting"]
        [event] = refusals(store)
        assert (event.actor, event.app, event.detail["status"]) == ("lead", shop, 403)
        assert payments not in str(event.detail)
        # A token limited to this very application decides.
        done = await http.post(link, data={"token": retail})
        assert done.status_code == 200, done.text
        assert (await handle.result()).state == ReleaseState.SUCCEEDED


def test_freezes_a_scoped_token_adds_or_lifts_only_over_its_own_applications(
    store: Store, tmp_path: Path,
) -> None:
    register(store, "payments", cluster="pay")
    shop = register(store, "retail")
    api = create_app(settings(tmp_path, "unused").model_copy(
        update={"temporal_address": "127.0.0.1:1"}), ReceiverSettings(), store)
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"],
                               roles=["read", "approve", "freeze-admin"])
    _, unscoped = create_token(store, "sre", roles=["read", "approve", "freeze-admin"])
    with TestClient(api) as http:
        # Every prod environment holds the retail app too: refused, naming it.
        everywhere = http.post("/api/freezes/now", json={"reason": "db failover"},
                               headers=bearer(payments))
        assert everywhere.status_code == 403
        assert f"application {shop} (team retail) is outside its scope" in (
            everywhere.json()["detail"])
        window = {"scope": "prod", "reason": "quiet", "kind": "window", "rrule": "FREQ=DAILY",
                  "duration": "2h"}
        assert http.post("/api/freezes", json=window,
                         headers=bearer(payments)).status_code == 403
        # The payments cluster holds payments apps only.
        own = http.post("/api/freezes/now", json={"reason": "pay db", "scope": "@pay"},
                        headers=bearer(payments))
        assert own.status_code == 201, own.text
        wide = http.post("/api/freezes/now", json={"reason": "incident"},
                         headers=bearer(unscoped))
        assert wide.status_code == 201
        lift = http.delete(f"/api/freezes/{wide.json()['id']}", headers=bearer(payments))
        assert lift.status_code == 403 and shop in lift.json()["detail"]
        assert http.delete(f"/api/freezes/{own.json()['id']}",
                           headers=bearer(payments)).status_code == 200
        assert http.delete(f"/api/freezes/{wide.json()['id']}",
                           headers=bearer(unscoped)).status_code == 200
    assert len(refusals(store)) == 3


async def test_lanes_a_scoped_token_sees_and_renews_only_lanes_it_covers(
    fresh_env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    pay, shop = register(store, "payments"), register(store, "retail")
    queue, lane = f"lanes-{uuid.uuid4()}", f"mix-{uuid.uuid4().hex[:6]}"
    async with Worker(fresh_env.client, task_queue=queue, workflows=[SwimlaneWorkflow],
                      activities=LaneWorld().activities()):
        handle = await fresh_env.client.start_workflow(
            SwimlaneWorkflow.run, LaneSpec(name=lane, apps=[pay, shop]),
            id=lane_workflow_id(lane), task_queue=queue)
        await wait_for_stage(handle, "active")
        _, payments = create_token(store, "qa", name="qa-pay", teams=["payments"])
        _, both = create_token(store, "qa", name="qa-both", teams=["payments", "retail"])
        async with receiver(fresh_env, store, tmp_path, queue) as http:
            for method, path in (("GET", f"/api/lanes/{lane}"),
                                 ("POST", f"/api/lanes/{lane}/renew"),
                                 ("DELETE", f"/api/lanes/{lane}")):
                answer = await http.request(method, path, headers=bearer(payments))
                assert answer.status_code == 403, (path, answer.text)
                assert f"application {shop} (team retail) is outside its scope" in (
                    answer.json()["detail"])
            assert (await handle.query(SwimlaneWorkflow.status)).stage == "active"
            renewed = await http.post(f"/api/lanes/{lane}/renew", headers=bearer(both))
            assert renewed.status_code == 200, renewed.text
    assert len(refusals(store)) == 3


def test_an_unknown_app_or_team_makes_no_token(store: Store) -> None:
    register(store, "payments")
    with pytest.raises(CatalogueError, match="unknown application 'nope'"):
        create_token(store, "lead", apps=["nope"])
    with pytest.raises(CatalogueError, match="no application belongs to team retial"):
        create_token(store, "lead", teams=["retial"])
    with pytest.raises(CatalogueError, match="invalid --team 'Pay Ments'"):
        create_token(store, "lead", teams=["Pay Ments"])
