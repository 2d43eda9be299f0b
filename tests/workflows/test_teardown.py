"""EnvTeardownWorkflow on the time-skipping server: fake runtime, traffic and catalogue
activities record the order; the release check is the real activity, asking the server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.teardown import TeardownActivities
from catalogue.store import Store
from schemas.models import DrainInput, EnsureFrontendInput, ListVersionsInput, VersionRef
from schemas.teardown import (
    EnvRemovedInput,
    TeardownOutcome,
    TeardownPlan,
    TeardownRequest,
    teardown_workflow_id,
)
from workflows.teardown import EnvTeardownWorkflow

APP, ENV = "shop", "prod@local"


@workflow.defn(name="ReleaseWorkflow", sandboxed=False)
class StuckRelease:
    """Stands in for a running release of the environment."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


class World:
    def __init__(self, versions: list[int]) -> None:
        self.versions = versions
        self.calls: list[str] = []
        self.removed: list[EnvRemovedInput] = []

    def activities(self) -> list[Callable[..., Any]]:
        @activity.defn(name="load_teardown")
        async def load_teardown(data: TeardownRequest) -> TeardownPlan:
            self.calls.append("load")
            return TeardownPlan(app=data.app, env=data.env, env_key="shop-prod-local",
                                cluster="local", lb_port=18080, drain_timeout_seconds=5,
                                already_removed=bool(self.removed))

        @activity.defn(name="list_versions")
        async def list_versions(data: ListVersionsInput) -> list[int]:
            self.calls.append("list")
            return list(self.versions)

        @activity.defn(name="drain")
        async def drain(data: DrainInput) -> None:
            assert data.keep == 0 and data.env_key == "shop-prod-local"
            self.calls.append(f"drain v{data.version}")

        @activity.defn(name="stop_version")
        async def stop_version(data: VersionRef) -> None:
            self.calls.append(f"stop v{data.version}")

        @activity.defn(name="remove_version")
        async def remove_version(data: VersionRef) -> None:
            self.calls.append(f"remove v{data.version}")
            self.versions.remove(data.version)  # gone: a second run finds nothing

        @activity.defn(name="remove_frontend")
        async def remove_frontend(data: EnsureFrontendInput) -> None:
            assert data.lb_port == 18080
            self.calls.append("remove frontend")

        @activity.defn(name="mark_env_removed")
        async def mark_env_removed(data: EnvRemovedInput) -> bool:
            self.calls.append("mark removed")
            first = not self.removed
            self.removed.append(data)
            return first

        return [load_teardown, list_versions, drain, stop_version, remove_version,
                remove_frontend, mark_env_removed]


async def run_teardown(env: WorkflowEnvironment, world: World, tmp_path: Path,
                       before: object = None) -> TeardownOutcome:
    queue = f"teardown-{uuid.uuid4()}"
    checks = TeardownActivities(Store(f"sqlite:///{tmp_path / 'unused.db'}"), env.client,
                                asyncio.get_running_loop())
    with ThreadPoolExecutor(max_workers=2) as executor:
        async with Worker(env.client, task_queue=queue, workflows=[EnvTeardownWorkflow],
                          activities=[*world.activities(), checks.check_release_idle],
                          activity_executor=executor):
            return await env.client.execute_workflow(
                EnvTeardownWorkflow.run,
                TeardownRequest(app=APP, env=ENV, requested_by="ana", reason="env remove"),
                id=teardown_workflow_id(APP, ENV) + f"-{uuid.uuid4().hex[:6]}",
                task_queue=queue)


async def test_drain_then_stop_then_remove_then_frontend_then_catalogue(
        env: WorkflowEnvironment, tmp_path: Path) -> None:
    world = World([1, 2])
    outcome = await run_teardown(env, world, tmp_path)
    assert world.calls == ["load", "list", "drain v1", "drain v2", "stop v1", "stop v2",
                           "remove v1", "remove v2", "remove frontend", "mark removed"]
    assert outcome == TeardownOutcome(app=APP, env=ENV, versions=[1, 2])
    [marked] = world.removed
    assert (marked.requested_by, marked.reason, marked.versions) == ("ana", "env remove", [1, 2])
    assert marked.workflow_id.startswith("teardown:shop:prod@local")

    # Re-running after it is done (or after a partial run) is safe: what is gone is skipped.
    world.calls.clear()
    again = await run_teardown(env, world, tmp_path)
    assert world.calls == ["load", "list", "remove frontend", "mark removed"]
    assert again.versions == [] and again.already_removed


async def test_refused_while_a_release_of_the_environment_runs(
        fresh_env: WorkflowEnvironment, tmp_path: Path) -> None:
    # A private server, time skipping off: the release that never ends must not time out.
    env = fresh_env
    release_queue = f"release-{uuid.uuid4()}"
    app = f"shop{uuid.uuid4().hex[:6]}"
    async with Worker(env.client, task_queue=release_queue, workflows=[StuckRelease]):
        running = await env.client.start_workflow(
            "ReleaseWorkflow", id=f"release:{app}:{ENV}", task_queue=release_queue)
        world = World([1])
        queue = f"teardown-{uuid.uuid4()}"
        checks = TeardownActivities(Store(f"sqlite:///{tmp_path / 'unused.db'}"), env.client,
                                    asyncio.get_running_loop())
        with ThreadPoolExecutor(max_workers=2) as executor:
            async with Worker(env.client, task_queue=queue, workflows=[EnvTeardownWorkflow],
                              activities=[*world.activities(), checks.check_release_idle],
                              activity_executor=executor):
                with env.auto_time_skipping_disabled(), \
                        pytest.raises(WorkflowFailureError) as refused:
                    await env.client.execute_workflow(
                        EnvTeardownWorkflow.run, TeardownRequest(app=app, env=ENV),
                        id=teardown_workflow_id(app, ENV), task_queue=queue)
        await running.terminate("test done")
    message = str(getattr(refused.value.cause, "cause", None))
    assert f"workflow release:{app}:{ENV}" in message and "is running" in message
    assert f"slipway env remove {app} {ENV}" in message
    assert world.calls == ["load"]  # nothing drained, stopped, removed or marked
