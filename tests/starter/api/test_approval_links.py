"""Approval links from a notification, through the receiver, to the release's approval desk
(time-skipping server, fake activities, the real link signing, proof signing and checking).

A chat notification carries every approver's links to the whole group, the requester
included: a link names its approver, and only that approver's own API token makes it decide.
"""

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


async def notified(world: FakeWorld, title: str, count: int = 1) -> str:
    """The ``count``-th message with ``title`` (sent just after a release starts waiting)."""
    for _ in range(200):
        found = [m for m in world.messages if m.startswith(title)]
        if len(found) >= count:
            return found[count - 1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {title!r} message in {world.messages}")


def receiver_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, credentials={"approval-links": SecretStr(SECRET)})


def receiver(env: WorkflowEnvironment, store: Store, tmp_path: Path) -> httpx.AsyncClient:
    api = create_app(receiver_settings(tmp_path), ReceiverSettings(), store)
    api.dependency_overrides[get_client] = lambda: env.client
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://receiver")


def links_of(message: str) -> dict[str, str]:
    """approver → path of their approve link, from a notification's text."""
    found = {}
    for line in message.splitlines():
        if line.startswith("- ") and "[approve](" in line:
            user = line[2:].split(":", 1)[0]
            found[user] = LINK.findall(line)[0][1]
    return found


def refused_events(store: Store) -> list[AuditEvent]:
    with store.session() as session:
        return list(session.exec(select(AuditEvent).where(
            col(AuditEvent.action).in_(["api.refused", "release.refused"]))).all())


def world_for(store: Store, tmp_path: Path) -> FakeWorld:
    """The worker's view: the link maker of the notify activity, and the signing secret the
    receiver signs proofs with (its state directory's)."""
    return FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                     links=ApprovalLinks("http://receiver", lambda: SECRET),
                     signing_secret=receiver_settings(tmp_path).approval_signing_secret())


async def test_the_requester_clicking_the_leads_link_is_refused_and_nothing_is_recorded(
    env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    app = register(store, approvers=["lead", "ana", "bob"])
    world = world_for(store, tmp_path)
    world.approvers = ["lead", "ana", "bob"]
    _, lead = create_token(store, "lead")
    _, ana = create_token(store, "ana")
    _, bob = create_token(store, "bob", roles=["read"])
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        handle = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana"),
            id=release_workflow_id(app, ENV), task_queue=queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        # One message to the group: lead's and bob's links, not the requester's.
        message = await notified(world, "approval needed")
        links = links_of(message)
        assert set(links) == {"lead", "bob"}
        lead_link = links["lead"]

        page = await http.get(lead_link)  # a preview: shows, asks for lead's token, decides nothing
        assert page.status_code == 200
        assert "approve as lead" in page.text and 'type="password" name="token"' in page.text
        assert "Nobody else can use it" in page.text

        # ana, the requester, in the same group, clicks lead's link: without a token …
        bare = await http.post(lead_link)
        assert bare.status_code == 401
        assert "this link is lead&#x27;s and needs lead&#x27;s API token" in bare.text
        # … with her own token in the page's form …
        as_ana = await http.post(lead_link, data={"token": ana})
        assert as_ana.status_code == 403
        assert ("this link is lead&#x27;s, but the token given is ana&#x27;s: only lead can "
                "approve through it") in as_ana.text
        # … or as a bearer token: refused the same, and nothing reached the release.
        assert (await http.post(lead_link, headers={"Authorization": f"Bearer {ana}"})
                ).status_code == 403
        assert (await http.post(lead_link, data={"token": "slw_guessed"})).status_code == 401
        # bob's own link with his token that lacks the approve role.
        no_role = await http.post(links["bob"], data={"token": bob})
        assert no_role.status_code == 403 and "lacks the approve role" in no_role.text
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval"
        assert not any("approved" in event.message or "refused" in event.message
                       for event in status.events)
        assert world.approvals == ["awaiting"]
        assert not [e for e in refused_events(store) if e.action == "release.refused"]

        # A link made with another secret, an expired one, and one that is not a link.
        forged = ApprovalLinks("http://receiver", lambda: "guessed").link(
            "lead", handle.id, handle.result_run_id or "", "approve", 600)
        assert (await http.post(forged.removeprefix("http://receiver"),
                                data={"token": lead})).status_code == 400
        expired = ApprovalLinks("http://receiver", lambda: SECRET).link(
            "lead", handle.id, handle.result_run_id or "", "approve", 60,
            now=time.time() - 3600).removeprefix("http://receiver")
        late = await http.post(expired, data={"token": lead})
        assert late.status_code == 403 and "this link expired" in late.text
        assert (await http.post("/approval/sal2.garbage.x", data={"token": lead})
                ).status_code == 400

        revoke_token(store, "lead")  # left the team: their token no longer opens the link
        gone = await http.post(lead_link, data={"token": lead})
        assert gone.status_code == 401 and "unknown or revoked" in gone.text
        _, lead = create_token(store, "lead")

        # lead, with lead's own token: approved.
        approved = await http.post(lead_link, data={"token": lead})
        assert approved.status_code == 200, approved.text
        assert f"lead approved {app}@{ENV} v2" in approved.text
        again = await http.post(lead_link, data={"token": lead})
        assert again.status_code == 403 and "not waiting for approval" in again.text
        outcome = await handle.result()
        status = await handle.query(ReleaseWorkflow.status)
    assert outcome.state == ReleaseState.SUCCEEDED
    assert world.finished[-1].approved_by == "lead"
    assert any(e.message.startswith("approved by lead (via link, token lead)")
               for e in status.events)
    events = refused_events(store)
    # The link refusals are audit events with who and why; never a link or a token.
    link_refusals = [e for e in events if e.action == "api.refused"]
    assert {e.actor for e in link_refusals} >= {"ana", "bob", ""}
    assert all(e.detail.get("path") == "/approval/<redacted>" for e in link_refusals)
    assert not any("sal2." in str(e.detail) or ana in str(e.detail) or lead in str(e.detail)
                   for e in events)


async def test_a_link_of_one_release_does_not_approve_the_next(
    env: WorkflowEnvironment, store: Store, tmp_path: Path,
) -> None:
    app = register(store)  # approvers lead and ana
    world = world_for(store, tmp_path)
    _, lead = create_token(store, "lead")
    runner, queue = worker(env, world)
    async with runner, receiver(env, store, tmp_path) as http:
        workflow_id = release_workflow_id(app, ENV)
        first = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana"),
            id=workflow_id, task_queue=queue)
        await wait_for(first, lambda s: s.awaiting == "approval")
        first_link = links_of(await notified(world, "approval needed"))["lead"]
        assert (await http.post(first_link, data={"token": lead})).status_code == 200
        assert (await first.result()).state == ReleaseState.SUCCEEDED

        second = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app=app, env=ENV, requested_by="ana",
                                                image="reg/other:9"),
            id=workflow_id, task_queue=queue)
        await wait_for(second, lambda s: s.awaiting == "approval")
        reused = await http.post(first_link, data={"token": lead})
        assert reused.status_code == 403
        assert "it was meant for" in reused.text and "is not running" in reused.text
        assert (await second.query(ReleaseWorkflow.status)).awaiting == "approval"
        second_link = links_of(await notified(world, "approval needed", 2))["lead"]
        assert second_link != first_link
        assert (await http.post(second_link, data={"token": lead})).status_code == 200
        assert (await second.result()).state == ReleaseState.SUCCEEDED
