"""Approval links from a notification, through the receiver, to the release's approval desk
(time-skipping server, fake activities, the real link signing and checking)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
from pydantic import SecretStr
from sqlmodel import col, select
from temporalio.testing import WorkflowEnvironment

from catalogue.store import Store
from catalogue.tables import AuditEvent
from integrations.notify.links import ApprovalLinks
from schemas.enums import ReleaseState
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.api.app import create_app
from starter.api.deps import get_client
from starter.api.settings import ReceiverSettings
from starter.service.tokens import create_token, revoke_token
from tests.starter.api.test_app import ENV, register
from tests.workflows.fakes import FakeWorld, wait_for, worker
from workflows.release import ReleaseWorkflow, release_workflow_id

SECRET = "link-s3cret"
LINK = re.compile(r"\((http://receiver(/approval/[^)]+))\)")


async def notified(world: FakeWorld, title: str) -> str:
    """The first message with ``title`` (sent just after the release starts waiting)."""
    for _ in range(200):
        found = [m for m in world.messages if m.startswith(title)]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {title!r} message in {world.messages}")


def receiver(env: WorkflowEnvironment, store: Store, tmp_path: Path) -> httpx.AsyncClient:
    settings = Settings(state_dir=tmp_path, credentials={"approval-links": SecretStr(SECRET)})
    api = create_app(settings, ReceiverSettings(), store)
    api.dependency_overrides[get_client] = lambda: env.client
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://receiver")


async def test_an_approval_link_approves_once_and_refuses_replays_expiry_and_the_requester(
    env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    app = register(store)  # approvers lead and ana
    links = ApprovalLinks("http://receiver", lambda: SECRET)
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      link_secret=SECRET, links=links)
    create_token(store, "lead")
    create_token(store, "ana")
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        workflow_id = release_workflow_id(app, ENV)
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana"),
            id=workflow_id, task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        message = await notified(world, "approval needed")
        found = dict(zip(("approve", "reject"), LINK.findall(message), strict=False))
        assert "- lead: [approve](" in message and "- ana:" not in message  # not the requester
        approve_path = found["approve"][1]

        page = await http.get(approve_path)  # a preview: shows, does not approve
        assert page.status_code == 200 and "approve as lead" in page.text
        assert (await handle.query(ReleaseWorkflow.status)).awaiting == "approval"

        own = await http.post(links.link("ana", workflow_id, "approve", 600)
                              .removeprefix("http://receiver"))
        assert own.status_code == 403 and "four eyes: ana requested this release" in own.text
        expired = await http.post(links.link("lead", workflow_id, "approve", 60,
                                             now=time.time() - 3600)
                                  .removeprefix("http://receiver"))
        assert expired.status_code == 403 and "has expired" in expired.text
        forged = ApprovalLinks("http://receiver", lambda: "guessed").link(
            "lead", workflow_id, "approve", 600).removeprefix("http://receiver")
        refused = await http.post(forged)
        assert refused.status_code == 403 and "not signed by an active token" in refused.text
        assert (await http.post("/approval/sal1.garbage.x")).status_code == 400

        revoke_token(store, "lead")  # left the team: their links no longer count
        gone = await http.post(approve_path)
        assert gone.status_code == 403 and "holds no active API token" in gone.text
        create_token(store, "lead")

        approved = await http.post(approve_path)
        assert approved.status_code == 200 and f"lead approved {app}@{ENV} v2" in approved.text
        replay = await http.post(approve_path)
        assert replay.status_code == 403 and "not waiting for approval" in replay.text
        outcome = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.finished[-1].approved_by == "lead"
    assert any(e.message.startswith("approved by lead (via link, token approval link)")
               for e in status.events)
    with store.session() as session:  # refusals are audited, links never stored
        events = session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "release.refused")).all()
    assert {event.actor for event in events} >= {"ana", "lead"}
    assert not any("sal1." in str(event.detail) for event in events)
