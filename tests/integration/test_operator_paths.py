"""The operator's everyday paths with no worker running: status answers at once and says why
nothing moves; `down` refuses while a release is in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from rich.console import Console
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from catalogue.store import Store
from schemas.models import ReleaseRequest
from schemas.settings import Settings
from starter.cli.status_view import render_status
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.in_flight import in_flight
from starter.service.releases import release_report, start_release, validate_release
from tests.support.cli import runner
from tests.support.workers import this_build
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.integration


APP = "opsapp"


@pytest.fixture
async def stranded(temporal: WorkflowEnvironment, settings: Settings,
                   store: Store) -> AsyncIterator[str]:
    """A release of APP started on a task queue no worker polls; terminated afterwards."""
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source="", description="", actor="ana")
    mark_ready(store, APP, "ana")
    env_name = add_env(store, APP, "prod", cluster="local", replicas=1, cpu="", memory="",
                       ports=[8080], env_vars={}, runtime="docker", namespace="default",
                       health_path="/healthz", settings=settings, actor="ana",
                       approval="none").name
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", image="slipway/busybox:local",
                              requested_by="ana"))
    started = await start_release(temporal.client, settings, request, summary)
    try:
        yield env_name
    finally:
        await started.handle.terminate("test over")


async def test_status_without_a_worker_answers_at_once_and_says_why(
    temporal: WorkflowEnvironment, settings: Settings, stranded: str,
) -> None:
    client, env_name = temporal.client, stranded

    began = time.monotonic()
    execution, progress, server = await release_report(client, APP, env_name)
    elapsed = time.monotonic() - began
    print(f"\nstatus with no worker ever polling: {elapsed:.2f} s")
    assert elapsed < 5  # the query used to wait ~30 s for a worker
    assert (execution, progress) == ("running", None)
    assert server is not None and not server.workers_polling
    assert server.task_queue == settings.task_queue

    # A worker that ran the first workflow task, then went away: the prepare activity it
    # scheduled is pending, and status shows it instead of hanging on the query.
    with ThreadPoolExecutor(max_workers=1) as executor:
        async with Worker(client, task_queue=settings.task_queue, workflows=[ReleaseWorkflow],
                          activity_executor=executor, **this_build(settings)):
            for _ in range(50):
                described = await client.get_workflow_handle(
                    f"release:{APP}:{env_name}").describe()
                if described.raw_description.pending_activities:
                    break
                await asyncio.sleep(0.1)
    began = time.monotonic()
    execution, progress, server = await release_report(client, APP, env_name)
    elapsed = time.monotonic() - began
    print(f"status after the worker left: {elapsed:.2f} s")
    assert elapsed < 5
    assert progress is None and server is not None
    assert [item.name for item in server.pending] == ["prepare_release"]
    console = Console(record=True, width=160, color_system=None)
    console.print(render_status(f"{APP}@{env_name}", execution, progress, "link", server=server))
    assert "pending activity prepare_release: scheduled" in console.export_text()


async def test_down_refuses_while_a_release_is_in_flight(
    temporal: WorkflowEnvironment, settings: Settings, stranded: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client, env_name = temporal.client, stranded
    target = client.service_client.config.target_host
    values = settings.model_copy(update={"temporal_address": target})
    assert await in_flight(values) == [f"release:{APP}:{env_name}"]

    stopped: list[Settings] = []

    def stop_stack(given: Settings) -> list[str]:
        stopped.append(given)
        return []

    monkeypatch.setattr("starter.cli.stack.get_settings", lambda: values)
    monkeypatch.setattr("starter.stack.processes.stop_stack", stop_stack)
    from starter.cli.main import cli

    refused = await asyncio.to_thread(runner.invoke, cli, ["down"])
    assert refused.exit_code == 1, refused.output
    assert f"release:{APP}:{env_name}" in refused.output and "--force" in refused.output
    assert stopped == []

    forced = await asyncio.to_thread(runner.invoke, cli, ["down", "--force"])
    assert forced.exit_code == 0, forced.output
    assert stopped == [values]
