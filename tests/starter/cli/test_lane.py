"""``slipway lane`` refuses bad names and unknown apps; a colliding name is refused."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from catalogue.lanes import record_lane
from catalogue.store import CatalogueError, Store
from catalogue.tables import Application
from schemas.lanes import LaneRecordInput, LaneSpec, LaneStage
from schemas.settings import Settings, get_settings
from starter.service.lanes import create_lane, lane_deploy_input, lane_name, lane_records
from tests.support.cli import ok, run
from workflows.swimlane import SwimlaneWorkflow


@pytest.mark.parametrize(("command", "words"), [
    ("lane create '***' --apps shop", ["empty after normalising"]),
    ("lane create pay --apps nope,shop", ["unknown application 'nope'"]),
    ("lane create pay --apps shop", ["shop has never been released or built",
                                     "release it to test first"]),
    ("lane create pay --apps gone", ["gone has no environment a lane could copy"]),
    ("lane create pay --apps ','", ["--apps names no application"]),
    ("lane create pay --apps shop --ttl soon", ["invalid --ttl 'soon'"]),
    ("lane create pay --apps shop --ttl 0", ["--ttl: lane TTL of 0s is out of range",
                                             "1m to 365d"]),
    ("lane create pay --apps shop --grace 0", ["--grace: lane grace period of 0s",
                                               "1m to 30d"]),
    ("lane create pay --apps shop --ttl 99999999d", ["--ttl: lane TTL of 99999999d is out"]),
    ("lane create pay --apps shop --ttl 99999999999999999999d", ["invalid --ttl"]),
])
def test_bad_lane_requests_are_refused(populated: Store, command: str,
                                       words: list[str]) -> None:
    result = run(command)
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line
    for word in words:
        assert word in line


def test_names_are_normalised_like_dns_labels() -> None:
    assert lane_name("Feature/Pay_2") == "feature-pay-2"
    with pytest.raises(CatalogueError, match="empty after normalising"):
        lane_name("__")


async def test_a_name_that_normalises_onto_a_running_lane_is_refused(
    fresh_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = fresh_env  # a private server: the lane's never-run activity would pin shared time
    monkeypatch.setenv("SLIPWAY_RECEIVER_URL", "https://slipway.example.com/")
    queue = f"lanes-{uuid.uuid4()}"
    settings = Settings(task_queue=queue)
    lane = f"pay-{uuid.uuid4().hex[:6]}"
    # No worker for lane activities: the first lane just sits creating, which is all we need.
    async with Worker(env.client, task_queue=queue, workflows=[SwimlaneWorkflow]):
        await create_lane(env.client, settings, LaneSpec(name=lane, apps=["shop"]), lane)
        with pytest.raises(CatalogueError) as refused:
            await create_lane(env.client, settings, LaneSpec(name=lane, apps=["shop"]),
                              lane.upper().replace("-", "_"))
        assert f"lane {lane!r} already exists" in str(refused.value)
        assert "normalises to it" in str(refused.value)
        handle = env.client.get_workflow_handle(f"swimlane:{lane}")
        # The lane's notice will offer the receiver's renew endpoint (SLIPWAY_RECEIVER_URL).
        started = (await handle.fetch_history()).events[0]
        [spec] = await env.client.data_converter.decode(
            started.workflow_execution_started_event_attributes.input.payloads, [LaneSpec])
        assert spec.renew_url == f"https://slipway.example.com/api/lanes/{lane}/renew"
        await handle.terminate("test done")


def test_lane_help_lists_the_commands() -> None:
    out = ok("lane --help").stdout
    for command in ("create", "list", "show", "renew", "update", "deploy", "delete"):
        assert command in out


async def test_show_falls_back_to_the_catalogue_once_the_workflow_is_gone(
        populated: Store, env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch) -> None:
    record_lane(populated, LaneRecordInput(
        name="old-lane", workflow_id="swimlane:old-lane", apps=["shop"],
        stage=LaneStage.DELETED, ticket="PAY-9"))
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    get_settings.cache_clear()
    try:
        # The CLI runs its own event loop: off this one.
        shown = await asyncio.to_thread(run, "lane show Old_Lane")
        ghost = await asyncio.to_thread(run, "lane show ghost")
    finally:
        get_settings.cache_clear()
    assert shown.exit_code == 0, shown.stderr
    assert "old-lane deleted since" in shown.stdout and "ticket: PAY-9" in shown.stdout
    assert "no longer in Temporal" in shown.stdout
    assert ghost.exit_code == 1 and "no lane 'ghost'" in ghost.stderr
    assert [row.name for row in lane_records(populated)] == ["old-lane"]


def test_lane_deploy_builds_the_lane_branch_of_a_git_source(populated: Store) -> None:
    with populated.session() as session:
        app = session.exec(select(Application).where(Application.name == "shop")).one()
        local_source = app.source
        app.source = "git@gitlab.example.com:team/shop.git"
        session.add(app)
        session.commit()
    asked = lane_deploy_input(populated, "pay-42", "shop", None, "dev")
    assert (asked.source, asked.sha) == ("git@gitlab.example.com:team/shop.git", "feature/pay-42")
    assert lane_deploy_input(populated, "pay-42", "shop", "abc123", "dev").sha == "abc123"
    with populated.session() as session:
        app = session.exec(select(Application).where(Application.name == "shop")).one()
        app.source = local_source or "/srv/shop"
        session.add(app)
        session.commit()
    assert lane_deploy_input(populated, "pay-42", "shop", None, "dev").sha == ""
    with pytest.raises(CatalogueError, match="unknown application 'nope'"):
        lane_deploy_input(populated, "pay-42", "nope", None, "dev")
