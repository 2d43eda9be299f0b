"""``slipway env remove`` and ``app retire`` to offline refuse, writing and starting nothing,
when the environment is unknown or a release of it runs; a removed environment is kept with
its history, and nothing is released into it again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func
from sqlmodel import select
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from catalogue.environments import REMOVED, is_removed, mark_removed
from catalogue.store import Store
from catalogue.tables import Application, AuditEvent, Environment
from schemas.models import ReleaseRequest
from schemas.settings import get_settings
from schemas.teardown import EnvRemovedInput, teardown_workflow_id
from starter.service.releases import validate_release
from tests.support.cli import Result, ok, run


def snapshot(store: Store) -> tuple[int, list[tuple[str, int]], list[str]]:
    """Audit events, environments (name, replicas) and application states."""
    with store.session() as session:
        events = session.exec(select(func.count()).select_from(AuditEvent)).one()
        envs = [(e.name, e.replicas) for e in session.exec(select(Environment)).all()]
        apps = [str(a.state) for a in session.exec(select(Application)).all()]
    return events, envs, apps


@pytest.mark.parametrize(("command", "words"), [
    ("env remove nope prod", ["unknown application 'nope'"]),
    ("env remove shop dev", ["has no environment 'dev'", "known: prod@local"]),
    ("env remove shop prod@mars", ["has no environment 'prod@mars'"]),
])
def test_unknown_targets_are_refused_without_temporal(populated: Store, command: str,
                                                      words: list[str]) -> None:
    before = snapshot(populated)
    result = run(command)  # the hermetic Temporal address never answers: not even asked
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error:") and "\n" not in line
    for word in words:
        assert word in line
    assert snapshot(populated) == before


@pytest.fixture
def temporal_cli(fresh_env: WorkflowEnvironment,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkflowEnvironment]:
    """A private server: the shared one may skip time past the never-ending release."""
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS",
                       fresh_env.client.service_client.config.target_host)
    get_settings.cache_clear()
    yield fresh_env
    get_settings.cache_clear()


async def cli(command: str) -> Result:
    return await asyncio.to_thread(run, command)  # the CLI runs its own event loop


async def no_teardown(env: WorkflowEnvironment, app: str, env_name: str) -> bool:
    try:
        await env.client.get_workflow_handle(teardown_workflow_id(app, env_name)).describe()
    except RPCError as error:
        return error.status == RPCStatusCode.NOT_FOUND
    return False


async def test_a_running_release_refuses_env_remove_and_the_offline_step(
        populated: Store, temporal_cli: WorkflowEnvironment) -> None:
    env = temporal_cli
    app = f"cart{uuid.uuid4().hex[:6]}"
    ok(f"app register {app} --ready")
    ok(f"env add {app} prod")
    ok(f"app retire {app}")  # ready → retiring: nothing torn down yet
    release_id = f"release:{app}:prod@local"
    # No worker polls this queue: the release stays running, as one waiting for approval does.
    running = await env.client.start_workflow("ReleaseWorkflow", id=release_id,
                                              task_queue=f"nobody-{uuid.uuid4()}")
    try:
        before = snapshot(populated)
        for command in (f"env remove {app} prod", f"app retire {app}"):
            result = await cli(command)
            assert result.exit_code == 1, result.stdout
            line = result.stderr.strip()
            assert line.startswith("error:") and "\n" not in line
            assert f"a release of {app} on prod@local is running: workflow {release_id}" in line
            assert f"slipway abort {app} prod@local" in line
        assert snapshot(populated) == before  # still retiring, env untouched, no audit event
        assert await no_teardown(env, app, "prod@local")
    finally:
        await running.terminate("test done")


async def test_without_temporal_the_offline_step_changes_nothing(populated: Store) -> None:
    ok("app retire shop")  # ready → retiring
    before = snapshot(populated)
    result = await cli("app retire shop")
    assert result.exit_code == 1
    assert "cannot reach Temporal" in result.stderr
    assert snapshot(populated) == before


def test_a_removed_environment_keeps_its_row_and_takes_no_release(populated: Store) -> None:
    marked = EnvRemovedInput(app="shop", env="prod@local", requested_by="ana",
                             reason="env remove", workflow_id="teardown:shop:prod@local",
                             versions=[1])
    assert mark_removed(populated, marked)
    assert not mark_removed(populated, marked)  # idempotent: no second event
    with populated.session() as session:
        env = session.exec(select(Environment)).one()
        events = session.exec(select(AuditEvent).where(AuditEvent.action == REMOVED)).all()
    assert is_removed(env) and env.lb_port > 0
    [event] = events
    assert (event.actor, event.app, event.env) == ("ana", "shop", "prod@local")
    assert event.detail["versions"] == [1] and event.detail["replicas"] == 1

    assert "prod@local (removed)" in ok("env list shop").stdout
    assert "(removed)" in ok("env show shop prod").stdout
    again = run("env remove shop prod")
    assert again.exit_code == 0 and "already removed" in again.stdout
    assert "by ana" in again.stdout
    for command in ("release shop prod --image registry.example/shop:2",
                    "change create shop prod --image registry.example/shop:2"):
        refused = run(command)
        assert refused.exit_code == 1
        assert "prod@local of shop was removed" in refused.stderr
    with pytest.raises(Exception, match="was removed"):
        validate_release(populated, ReleaseRequest(app="shop", env="prod", image="x:1"))
