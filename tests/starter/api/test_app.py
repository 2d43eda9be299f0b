"""The HTTP receiver against ReleaseWorkflow on Temporal's time-skipping test server.

The workflow runs with the recorded fake activities of tests/workflows; the receiver runs
in-process through httpx's ASGI transport (TestClient would block the event loop the worker
needs), with the test server's client injected through the ``get_client`` dependency.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import col, select
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from catalogue.lanes import record_lane
from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Change, Environment
from schemas.enums import AppState, AppTier, ChangeKind, ChangeState, ReleaseState
from schemas.lanes import (
    DeleteInput,
    LaneRecordInput,
    LaneSpec,
    LaneStage,
    LaneStatus,
    lane_workflow_id,
)
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.deps import get_client
from starter.api.settings import HookRule, ReceiverSettings
from starter.service.tokens import create_token, revoke_token
from tests.support.workers import workers
from tests.workflows.fakes import FakeWorld, wait_for, worker
from tests.workflows.lane_fakes import LaneWorld
from workflows.release import ReleaseWorkflow, release_workflow_id
from workflows.swimlane import SwimlaneWorkflow

ENV = "prod@local"
GITLAB_SECRET = "gitlab-s3cret"
REGISTRY_SECRET = "registry-s3cret"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    catalogue = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    yield catalogue
    catalogue.engine.dispose()


def register(store: Store, approvers: list[str] | None = None,
             env_types: tuple[str, ...] = ("prod",)) -> str:
    """A fresh core application with a prod environment; its name is unique per test."""
    name = f"shop-{uuid.uuid4().hex[:8]}"
    with store.session() as session:
        app = Application(name=name, state=AppState.READY, tier=AppTier.CORE, source="/src/shop",
                          approvers=approvers if approvers is not None else ["lead", "ana"])
        session.add(app)
        session.flush()
        for env_type in env_types:
            session.add(Environment(app_id=app.id or 0, env_type=env_type, cluster="local",
                                    lb_port=20000 + uuid.uuid4().int % 20000))
        session.commit()
    return name


# The pushes of these tests come from GitLab account "dev", Slipway user dev.
IDENTITIES = {"gitlab:dev": "dev"}


def settings(tmp_path: Path, queue: str,
             identities: dict[str, str] | None = None) -> Settings:
    return Settings(state_dir=tmp_path, task_queue=queue,
                    identities=IDENTITIES if identities is None else identities,
                    credentials={"gitlab-hook": SecretStr(GITLAB_SECRET),
                                 "registry-hook": SecretStr(REGISTRY_SECRET)})


def receiver(env: WorkflowEnvironment, store: Store, tmp_path: Path, queue: str = "unused",
             rules: list[HookRule] | None = None,
             identities: dict[str, str] | None = None) -> httpx.AsyncClient:
    api = create_app(settings(tmp_path, queue, identities),
                     ReceiverSettings(hook_rules=rules or []), store)
    api.dependency_overrides[get_client] = lambda: env.client
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://receiver")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_approval_tokens_and_the_validator_decide(env: WorkflowEnvironment, store: Store,
                                                        tmp_path: Path) -> None:
    app = register(store)
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=settings(tmp_path, "unused").approval_signing_secret())
    _, lead = create_token(store, "lead")
    _, mallory = create_token(store, "mallory")
    _, ana = create_token(store, "ana")
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana"),
            id=release_workflow_id(app, ENV), task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        url = f"/api/releases/{app}/prod/approve"

        missing = await http.post(url, json={})
        assert missing.status_code == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert (await http.post(url, json={}, headers=bearer("slw_wrong"))).status_code == 401

        _, reader = create_token(store, "lead", name="lead-dashboard", roles=["read"])
        read_only = await http.post(url, json={}, headers=bearer(reader))
        assert read_only.status_code == 403
        assert "token lead-dashboard of lead lacks the approve role" in read_only.json()["detail"]

        refused = await http.post(url, json={}, headers=bearer(mallory))
        assert refused.status_code == 403
        assert refused.json()["detail"] == (
            f"mallory is not an approver of {app} (approvers: lead, ana)")
        four_eyes = await http.post(url, json={}, headers=bearer(ana))
        assert four_eyes.status_code == 403
        assert four_eyes.json()["detail"].startswith("four eyes: ana requested this release")

        malformed = await http.post(url, content=b"{not json", headers={
            **bearer(lead), "Content-Type": "application/json"})
        assert malformed.status_code == 422

        unknown = await http.post(f"/api/releases/{app}/staging/approve", json={},
                                  headers=bearer(lead))
        assert unknown.status_code == 404
        assert f"application {app!r} has no environment 'staging'" in unknown.json()["detail"]

        revoke_token(store, "lead")
        assert (await http.post(url, json={}, headers=bearer(lead))).status_code == 401
        _, lead = create_token(store, "lead")
        approved = await http.post(url, json={"comment": "go"}, headers=bearer(lead))
        assert approved.status_code == 200, approved.text
        assert approved.json() == {"result": f"lead approved {app}@{ENV} v2", "user": "lead"}
        outcome = await handle.result()
        assert outcome.state == ReleaseState.SUCCEEDED
        assert world.approvals == ["awaiting", "lead"]

        assert (await http.get(f"/api/releases/{app}/prod")).status_code == 401
        status = await http.get(f"/api/releases/{app}/prod", headers=bearer(lead))
        assert status.status_code == 200
        assert status.json()["status"] == "completed"
        assert status.json()["progress"]["stage"] == "succeeded"
        late = await http.post(url, json={}, headers=bearer(lead))
        assert late.status_code in (403, 409)
    # Every refusal is an audit event with who and why; never a token value.
    with store.session() as session:
        events = session.exec(select(AuditEvent).where(
            col(AuditEvent.action).in_(["api.refused", "release.refused"]))).all()
    reasons = [(event.action, event.actor, event.detail.get("reason", "")) for event in events]
    assert ("api.refused", "", "missing bearer token") in reasons
    assert ("api.refused", "", "invalid or revoked token") in reasons
    assert any(action == "api.refused" and actor == "lead" and "approve role" in reason
               for action, actor, reason in reasons)
    assert any(action == "release.refused" and actor == "ana" and reason.startswith("four eyes")
               for action, actor, reason in reasons)
    assert any(action == "release.refused" and actor == "mallory" for action, actor, _ in reasons)
    assert not any(token in str(event.detail) for event in events
                   for token in (lead, mallory, ana, reader))


async def test_reject_ends_the_release(env: WorkflowEnvironment, store: Store,
                                       tmp_path: Path) -> None:
    app = register(store)
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=settings(tmp_path, "unused").approval_signing_secret())
    _, lead = create_token(store, "lead")
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana"),
            id=release_workflow_id(app, ENV), task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        answer = await http.post(f"/api/releases/{app}/prod/reject",
                                 json={"comment": "not today"}, headers=bearer(lead))
        assert answer.status_code == 200, answer.text
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "rejected by lead (via receiver, token lead): not today" in str(failure.value.cause)
    assert world.finished[-1].state == ReleaseState.REJECTED


def tag_push(project: str, tag: str, sha: str = "a" * 40) -> dict[str, Any]:
    return {"object_kind": "tag_push", "ref": f"refs/tags/{tag}", "checkout_sha": sha,
            "after": sha, "user_username": "dev", "project": {"path_with_namespace": project}}


def branch_push(project: str, branch: str, sha: str) -> dict[str, Any]:
    return {"object_kind": "push", "ref": f"refs/heads/{branch}", "checkout_sha": sha,
            "after": sha, "user_username": "dev", "project": {"path_with_namespace": project}}


def gitlab_headers(event_id: str, token: str = GITLAB_SECRET,
                   event: str = "Tag Push Hook") -> dict[str, str]:
    return {"X-Gitlab-Token": token, "X-Gitlab-Event": event, "X-Gitlab-Event-UUID": event_id}


def changes_of(store: Store, app: str) -> list[Change]:
    with store.session() as session:
        owner = session.exec(select(Application).where(Application.name == app)).one()
        return list(session.exec(select(Change).where(Change.app_id == owner.id)
                                 .order_by(Change.id)).all())  # type: ignore[arg-type]


async def test_tag_push_releases_once(env: WorkflowEnvironment, store: Store,
                                      tmp_path: Path) -> None:
    app = register(store)
    world = FakeWorld(current_version=1, versions=[1])
    rules = [HookRule(project="team/shop", tag_pattern="v*", app=app, env="prod")]
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path, queue, rules) as http:
        payload = tag_push("team/shop", "v1.2.0")
        wrong = await http.post("/hooks/gitlab", json=payload,
                                headers=gitlab_headers("e-1", token="guess"))
        assert wrong.status_code == 401
        first = await http.post("/hooks/gitlab", json=payload, headers=gitlab_headers("e-1"))
        assert first.status_code == 200, first.text
        [started] = first.json()["releases"]
        assert started["workflow_id"] == release_workflow_id(app, ENV)
        [change] = changes_of(store, app)
        assert started["change_id"] == str(change.id)
        assert (change.kind, change.ref, change.note, change.requested_by) == (
            ChangeKind.CODE, "v1.2.0", "tag v1.2.0 pushed by dev", "dev")
        # The fake activities don't write the catalogue: the receiver marked it releasing.
        assert change.state in (ChangeState.RELEASING, ChangeState.RELEASED)

        handle = env.client.get_workflow_handle(release_workflow_id(app, ENV),
                                                result_type=ReleaseOutcome)
        description = await handle.describe()
        assert description.run_id == started["run_id"]
        outcome = await handle.result()
        assert outcome.state == ReleaseState.SUCCEEDED
        assert "build v1.2.0" in world.calls

        replay = await http.post("/hooks/gitlab", json=payload, headers=gitlab_headers("e-1"))
        assert replay.json() == {"status": "duplicate", "event_id": "e-1"}
        assert world.calls.count("prepare") == 1
        assert (await handle.describe()).run_id == started["run_id"]
        # The same tag redelivered under a new event id: its change is not released again.
        again = await http.post("/hooks/gitlab", json=payload, headers=gitlab_headers("e-3"))
        [refused] = again.json()["releases"]
        assert f"already carried by change {change.id}" in refused["refused"]
        assert [c.id for c in changes_of(store, app)] == [change.id]
        assert world.calls.count("prepare") == 1

        other = await http.post("/hooks/gitlab", json=tag_push("team/other", "v9"),
                                headers=gitlab_headers("e-2"))
        assert other.json()["status"] == "no matching rule"
    with store.session() as session:
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "hook.gitlab")).all()
    assert [e.detail["ref"] for e in events] == ["v1.2.0", "v1.2.0"]
    assert GITLAB_SECRET not in json.dumps([e.detail for e in events])


async def test_an_unmapped_pusher_cannot_start_a_release_that_needs_approval(
        env: WorkflowEnvironment, store: Store, tmp_path: Path) -> None:
    """gitlab:alice.w may be the approver alice: the four-eyes rule could not tell, so the
    hook refuses, records nothing, and says which setting to add."""
    app = register(store, approvers=["alice", "lead"], env_types=("test", "prod"))
    world = FakeWorld(current_version=1, versions=[1])
    rules = [HookRule(project="team/shop", tag_pattern="v*", app=app, env="prod"),
             HookRule(project="team/shop", tag_pattern="v*", app=app, env="test")]
    payload = {**tag_push("team/shop", "v2.0.0"), "user_username": "alice.w"}
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path, queue, rules, identities={}) as http:
        answer = await http.post("/hooks/gitlab", json=payload, headers=gitlab_headers("u-1"))
        assert answer.status_code == 200, answer.text
        refused, started = answer.json()["releases"]
        # test@local needs no approval: the unmapped pusher's release goes ahead there.
        handle = env.client.get_workflow_handle(started["workflow_id"],
                                                result_type=ReleaseOutcome)
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    assert refused["env"] == "prod" and "workflow_id" not in refused
    assert (f"releases of {app} on {ENV} need approval, and the pusher of tag v2.0.0, "
            "gitlab:alice.w, maps to no Slipway user") in refused["refused"]
    assert ('add "gitlab:alice.w": "<slipway user>" to SLIPWAY_IDENTITIES on the receiver'
            in refused["refused"])
    # Nothing half-written for prod: one change, test's, and one release started.
    [change] = changes_of(store, app)
    assert started["change_id"] == str(change.id) and started["env"] == "test@local"
    assert world.calls.count("prepare") == 1
    with store.session() as session:
        [event] = session.exec(select(AuditEvent).where(AuditEvent.action == "hook.gitlab"))
    assert event.actor == "alice.w" and event.detail["releases"][0] == refused


async def test_branch_rules_release_the_pushed_commit(env: WorkflowEnvironment, store: Store,
                                                      tmp_path: Path) -> None:
    app = register(store, env_types=("test", "prod"))
    world = FakeWorld(current_version=1, versions=[1])
    rules = [HookRule(project="team/shop", branch="develop", app=app, env="test"),
             HookRule(project="team/shop", branch="master", app=app, env="prod")]
    sha = "b" * 40
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path, queue, rules) as http:
        answer = await http.post("/hooks/gitlab", json=branch_push("team/shop", "develop", sha),
                                 headers=gitlab_headers("p-1", event="Push Hook"))
        assert answer.status_code == 200, answer.text
        [started] = answer.json()["releases"]
        assert started["workflow_id"] == release_workflow_id(app, "test@local")
        handle = env.client.get_workflow_handle(started["workflow_id"],
                                                result_type=ReleaseOutcome)
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
        ignored = await http.post("/hooks/gitlab", json=branch_push("team/shop", "feature", sha),
                                  headers=gitlab_headers("p-2", event="Push Hook"))
        assert ignored.json()["status"] == "no matching rule"
    [change] = changes_of(store, app)
    assert (change.ref, change.note) == (sha, f"branch develop at {sha[:12]} pushed by dev")
    assert change.state in (ChangeState.RELEASING, ChangeState.RELEASED)
    assert world.calls.count("prepare") == 1


async def test_registry_pushes_are_audited_once(env: WorkflowEnvironment, store: Store,
                                                tmp_path: Path) -> None:
    app = register(store)
    distribution = {"events": [
        {"id": "evt-1", "action": "push", "actor": {"name": "ci"},
         "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                    "repository": f"team/{app}", "tag": "1.0", "digest": "sha256:" + "1" * 64}},
        {"id": "evt-2", "action": "push",
         "target": {"mediaType": "application/octet-stream", "repository": f"team/{app}",
                    "digest": "sha256:" + "2" * 64}},
    ]}
    harbor = {"type": "PUSH_ARTIFACT", "occur_at": 1700000000, "operator": "admin",
              "event_data": {"resources": [{"digest": "sha256:" + "3" * 64, "tag": "1.1"}],
                             "repository": {"repo_full_name": f"library/{app}"}}}
    async with receiver(env, store, tmp_path) as http:
        assert (await http.post("/hooks/registry", json=harbor)).status_code == 401
        auth = {"Authorization": f"Bearer {REGISTRY_SECRET}"}
        for _ in range(2):  # the second round is a redelivery of both
            await http.post("/hooks/registry", json=distribution, headers=auth)
            answer = await http.post("/hooks/registry", json=harbor,
                                     headers={"Authorization": REGISTRY_SECRET})
        assert answer.json() == {"recorded": 0, "duplicates": 1}
    with store.session() as session:
        events = session.exec(select(AuditEvent).where(
            AuditEvent.action == "registry.push")).all()
    assert sorted((e.app, e.detail["tag"], e.detail["source"]) for e in events) == [
        (app, "1.0", "distribution"), (app, "1.1", "harbor")]


def test_openapi_baselines_and_malformed_hook(store: Store, tmp_path: Path) -> None:
    app = register(store)
    api = create_app(settings(tmp_path, "unused"), ReceiverSettings(), store)
    # No Temporal here: nothing in this test may reach it.
    api.dependency_overrides[get_client] = lambda: None
    with TestClient(api) as http:
        paths = http.get("/openapi.json").json()["paths"]
        assert {"/api/releases/{app}/{env}/approve", "/hooks/gitlab",
                "/api/baselines/{app}/{env}"} <= set(paths)
        _, token = create_token(store, "viewer", roles=["read"])
        assert http.get(f"/api/baselines/{app}/prod").status_code == 401
        assert http.get(f"/api/baselines/{app}/prod", headers=bearer(token)).json() == []
        assert http.get("/api/baselines/nope/prod", headers=bearer(token)).status_code == 404
        malformed = http.post("/hooks/gitlab", content=b"{", headers=gitlab_headers("x"))
        assert malformed.status_code == 422


async def test_lane_endpoints_show_renew_and_delete_a_lane(fresh_env: WorkflowEnvironment,
                                                          store: Store, tmp_path: Path) -> None:
    queue = f"lanes-{uuid.uuid4()}"

    lane = f"pay-{uuid.uuid4().hex[:6]}"
    async with Worker(fresh_env.client, task_queue=queue, workflows=[SwimlaneWorkflow],
                      activities=LaneWorld().activities()):
        handle = await fresh_env.client.start_workflow(
            SwimlaneWorkflow.run, LaneSpec(name=lane, apps=["shop"]),
            id=lane_workflow_id(lane), task_queue=queue)
        await wait_for_stage(handle, "active")
        _, token = create_token(store, "qa")
        async with receiver(fresh_env, store, tmp_path, queue) as http:
            # GET /api/lanes needs visibility (list workflows): the dev-server lane test has it.
            assert (await http.get(f"/api/lanes/{lane}")).status_code == 401
            shown = (await http.get(f"/api/lanes/{lane.upper()}", headers=bearer(token))).json()
            assert [entry["kind"] for entry in shown["ledger"]][:3] == ["namespace", "messages",
                                                                     "branch"]
            assert (await http.get("/api/lanes/ghost", headers=bearer(token))).status_code == 404
            assert (await http.get("/api/lanes/__", headers=bearer(token))).status_code == 422
            # Renew and delete act as the token's user; without a token nothing happens.
            assert (await http.post(f"/api/lanes/{lane}/renew")).status_code == 401
            renewed = await http.post(f"/api/lanes/{lane}/renew", headers=bearer(token))
            assert renewed.status_code == 200, renewed.text
            assert renewed.json()["renewed_by"] == "qa"
            assert renewed.json()["expires_at"] >= shown["expires_at"]
            assert (await http.post("/api/lanes/ghost/renew",
                                    headers=bearer(token))).status_code == 404
            assert (await http.delete(f"/api/lanes/{lane}")).status_code == 401
            # Only the lane's owner (or a lane-admin) deletes it: qa is not its owner yet.
            not_owner = await http.delete(f"/api/lanes/{lane}", headers=bearer(token))
            assert not_owner.status_code == 403
            assert "only its owner or a token with the lane-admin role" in (
                not_owner.json()["detail"])
            record_lane(store, LaneRecordInput(name=lane, workflow_id=lane_workflow_id(lane),
                                               apps=["shop"], stage=LaneStage.ACTIVE,
                                               requested_by="qa"))
            deleted = await http.delete(f"/api/lanes/{lane}", headers=bearer(token))
            assert deleted.status_code == 200, deleted.text
            assert deleted.json()["removed"][-1] == f"namespace {lane}"
            assert deleted.json()["deleted_by"] == "qa"
            # A deleted lane takes no renewals: the workflow says why.
            late = await http.post(f"/api/lanes/{lane}/renew", headers=bearer(token))
            assert late.status_code in (404, 409) and lane in late.json()["detail"]
        await handle.result()


async def wait_for_stage(handle: Any, stage: str) -> None:
    for _ in range(200):
        if (await handle.query(SwimlaneWorkflow.status)).stage == stage:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"lane never reached {stage}")


async def test_a_push_to_a_lane_branch_builds_and_deploys_into_the_lane(
        env: WorkflowEnvironment, store: Store, tmp_path: Path) -> None:
    queue, world = f"lanes-{uuid.uuid4()}", LaneWorld()
    app = register(store)
    with store.session() as session:
        row = session.exec(select(Application).where(Application.name == app)).one()
        row.source = f"git@gitlab.example:shop/{app}.git"
        session.add(row)
        session.commit()
    lane = f"pay-{uuid.uuid4().hex[:6]}"
    async with workers(env.client, queue, [SwimlaneWorkflow], world.activities()):
        handle = await env.client.start_workflow(
            SwimlaneWorkflow.run, LaneSpec(name=lane, apps=[app]), id=lane_workflow_id(lane),
            task_queue=queue)
        await wait_for_stage(handle, "active")
        created: LaneStatus = await handle.query(SwimlaneWorkflow.status)
        async with receiver(env, store, tmp_path, queue) as http:
            sha = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
            push = branch_push(f"shop/{app}", f"feature/{lane}", sha)
            answer = await http.post("/hooks/gitlab", json=push,
                                     headers=gitlab_headers("p-1", event="Push Hook"))
            assert answer.status_code == 200, answer.text
            [accepted] = answer.json()["lanes"]
            assert accepted["update_id"] == f"push:{app}:{sha}" and accepted["lane"] == lane
            # The build and the deploy run in the lane's workflow; the push renews the lane.
            for _ in range(200):
                if world.deploys:
                    break
                await asyncio.sleep(0.05)
            assert world.builds == [f"{app} {sha} {lane}-{sha[:12]}"]
            assert world.deploys == [f"{app} reg.local/{app}@sha256:{sha} (was v1)"]
            status: LaneStatus = await handle.query(SwimlaneWorkflow.status)
            assert status.last_activity and created.last_activity
            assert status.last_activity > created.last_activity
            again = await http.post("/hooks/gitlab", json=push,
                                    headers=gitlab_headers("p-1", event="Push Hook"))
            assert again.json()["status"] == "duplicate" and len(world.builds) == 1
            # A lane that does not exist, and a repository no app builds from, are refused.
            ghost = (await http.post("/hooks/gitlab", json=branch_push(
                f"shop/{app}", "feature/ghost", sha), headers=gitlab_headers(
                "p-2", event="Push Hook"))).json()
            assert "no running lane 'ghost'" in ghost["lanes"][0]["refused"]
            stray = (await http.post("/hooks/gitlab", json=branch_push(
                "shop/other", f"feature/{lane}", sha), headers=gitlab_headers(
                "p-3", event="Push Hook"))).json()
            assert "no registered app has its source in shop/other" in stray["lanes"][0][
                "refused"]
            wrong = await http.post("/hooks/gitlab", json=push, headers=gitlab_headers(
                "p-4", token="nope", event="Push Hook"))
            assert wrong.status_code == 401 and len(world.builds) == 1
            # Another lane's hook sees this push too: it leaves it to this lane's hook.
            other = (await http.post("/hooks/gitlab?lane=other", json=push, headers=(
                gitlab_headers("p-5", event="Push Hook")))).json()
            assert other["status"] == "no matching rule" and len(world.builds) == 1
        await handle.execute_update(SwimlaneWorkflow.delete, DeleteInput(user="qa"))
        await handle.result()


@pytest.mark.parametrize("ref", ["refs/heads/--upload-pack=touch {marker}",
                                 "refs/tags/-b{marker}", "refs/heads/feature/x\n"])
async def test_a_hostile_pushed_ref_is_refused_before_anything_runs(
        env: WorkflowEnvironment, store: Store, tmp_path: Path, ref: str) -> None:
    app = register(store)
    marker = tmp_path / "pwned"
    rules = [HookRule(project="team/shop", tag_pattern="*", app=app, env="prod")]
    payload = tag_push("team/shop", "x", "b" * 40) if "tags" in ref else branch_push(
        "team/shop", "x", "b" * 40)
    payload["ref"] = ref.format(marker=marker)
    async with receiver(env, store, tmp_path, rules=rules) as http:
        answer = await http.post("/hooks/gitlab", json=payload,
                                 headers=gitlab_headers(f"e-{uuid.uuid4().hex}"))
    assert answer.status_code == 422, answer.text
    assert "pushed ref" in answer.json()["detail"]
    assert changes_of(store, app) == []
    assert not marker.exists()


@pytest.mark.parametrize(("hook", "payload", "reason"), [
    ("/hooks/registry", {"events": [{"action": "push", "target": "x"}]},
     "events[0].target must be a JSON object"),
    ("/hooks/registry", {"events": "push"}, "events must be a JSON array"),
    ("/hooks/registry", {"events": [7]}, "events[0] must be a JSON object"),
    ("/hooks/registry", {"events": [{"action": "push", "target": {"tag": "1"}}]},
     "names no repository"),
    ("/hooks/registry", {"type": "PUSH_ARTIFACT", "event_data": {"resources": "x"}},
     "event_data.resources must be a JSON array"),
    ("/hooks/registry", {"hello": "world"}, "neither a distribution notification"),
    ("/hooks/gitlab", {"object_kind": "push", "ref": ["refs/heads/x"], "after": "a" * 40},
     "ref must be a string"),
    ("/hooks/gitlab", {"object_kind": "push", "ref": "refs/heads/x", "after": "a" * 40,
                       "project": "team/shop"}, "project must be a JSON object"),
])
async def test_unexpected_webhook_shapes_answer_422_with_the_reason(
        env: WorkflowEnvironment, store: Store, tmp_path: Path, hook: str,
        payload: dict[str, Any], reason: str) -> None:
    headers = (gitlab_headers(f"e-{uuid.uuid4().hex}", event="Push Hook")
               if hook == "/hooks/gitlab" else {"Authorization": f"Bearer {REGISTRY_SECRET}"})
    async with receiver(env, store, tmp_path) as http:
        answer = await http.post(hook, json=payload, headers=headers)
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["detail"]
