"""``starter.service.controls`` against ReleaseWorkflow on Temporal's time-skipping test server.

The workflow runs with the recorded fake activities of tests/workflows; what is tested here is
the CLI side: the Update each control sends, how a validator's refusal or a missing release
becomes the one-line CatalogueError, and the watch loop.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from catalogue.store import CatalogueError, Store
from schemas.enums import ReleaseState, Strategy
from schemas.models import ApprovalInput, ControlInput, ReleaseRequest, ReleaseStatus
from schemas.settings import get_settings
from schemas.trains import TrainMember, TrainRequest
from starter.cli.main import cli
from starter.service.controls import control_input, send_update, watch
from starter.service.tokens import create_token
from tests.support.cli import ok, runner
from tests.workflows.fakes import FakeWorld, signed, wait_for, worker
from workflows.release import ReleaseWorkflow, release_workflow_id
from workflows.train import TrainWorkflow, train_workflow_id

ENV = "prod@local"


def request(requested_by: str = "ana") -> ReleaseRequest:
    """A release of a fresh app, so every test has its own workflow id."""
    return ReleaseRequest(app=f"shop-{uuid.uuid4().hex[:8]}", env=ENV, requested_by=requested_by)


async def start(env: WorkflowEnvironment, release: ReleaseRequest,
                queue: str) -> WorkflowHandle[Any, Any]:
    # The id the CLI derives from app and env, as `slipway release` starts it.
    return await env.client.start_workflow(
        ReleaseWorkflow.run, release, id=release_workflow_id(release.app, release.env),
        task_queue=queue,
    )


async def refused(env: WorkflowEnvironment, app: str, name: str, user: str = "sre") -> str:
    with pytest.raises(CatalogueError) as error:
        await send_update(env.client, app, ENV, name, control_input(name, user))
    return str(error.value)


def test_control_input_carries_comment_or_reason() -> None:
    assert control_input("approve", "lead", "go") == ApprovalInput(user="lead", comment="go")
    assert control_input("reject", "lead") == ApprovalInput(user="lead")
    assert control_input("abort", "sre", "5xx") == ControlInput(user="sre", reason="5xx")
    assert control_input("promote-full", "sre") == ControlInput(user="sre")


async def test_approval_refusals_then_approve(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], approval_required=True)
    release = request(requested_by="ana")
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        assert await refused(env, release.app, "approve", "mallory") == (
            "approve refused: mallory is not an approver of "
            f"{release.app} (approvers: lead, ana)")
        four_eyes = await refused(env, release.app, "approve", "ana")
        assert four_eyes.startswith("approve refused: four eyes: ana requested this release")
        assert "nothing to promote" in await refused(env, release.app, "promote")
        answer = await send_update(env.client, release.app, ENV, "approve",
                                   signed(handle, "lead", comment="go"))
        assert answer == f"lead approved {release.app}@{ENV} v2"
        outcome = await handle.result()
        assert outcome.state == ReleaseState.SUCCEEDED
        # The release has ended: the control names that instead of a raw RPC error.
        ended = await refused(env, release.app, "approve", "lead")
    assert ended == (f"cannot approve: the latest release of {release.app} on {ENV} is not "
                     f"running (workflow completed); see `slipway status {release.app} {ENV}`")


async def test_gate_pause_resume_promote(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      gray_steps=["1", "gate", "100%"], stable_seconds=0)
    release = request()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        await wait_for(handle, lambda s: s.awaiting == "promote")
        sent = [await send_update(env.client, release.app, ENV, "pause",
                                  control_input("pause", "sre"))]
        assert "already paused" in await refused(env, release.app, "pause")
        status: ReleaseStatus = await handle.query(ReleaseWorkflow.status)
        assert status.paused
        for name in ("resume", "promote"):
            sent.append(await send_update(env.client, release.app, ENV, name,
                                          control_input(name, "sre")))
        outcome = await handle.result()
    assert sent[0].startswith("paused by sre") and sent[1] == "resumed by sre"
    assert sent[2] == "promoted by sre"
    assert outcome.state == ReleaseState.SUCCEEDED


async def test_abort_at_a_gate_rolls_back(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1], strategy=Strategy.GRAY, replicas=4,
                      gray_steps=["1", "gate", "100%"], stable_seconds=0)
    release = request()
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        await wait_for(handle, lambda s: s.awaiting == "promote")
        answer = await send_update(env.client, release.app, ENV, "abort",
                                   control_input("abort", "sre", "error rate up"))
        assert answer == "abort requested by sre: rolling back"
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert world.finished[-1].state == ReleaseState.ROLLED_BACK
    assert "error rate up" in world.finished[-1].error


async def test_no_release_yet(env: WorkflowEnvironment) -> None:
    assert await refused(env, "ghost", "pause") == (
        f"cannot pause: no release of ghost on {ENV} has run yet")
    with pytest.raises(CatalogueError, match="unknown control 'deploy'"):
        await send_update(env.client, "ghost", ENV, "deploy", ControlInput(user="sre"))


async def test_watch_reports_until_the_release_ends(env: WorkflowEnvironment) -> None:
    world = FakeWorld(current_version=1, versions=[1])
    release = request()
    seen: list[tuple[str, str]] = []
    runner, queue = worker(env, world)
    async with runner:
        handle = await start(env, release, queue)
        final = await watch(env.client, release.app, ENV,
                            lambda execution, status, _server: seen.append(
                                (execution, status.stage if status else "-")),
                            interval=0.05)
        await handle.result()
    assert final == "completed"
    assert seen[-1] == ("completed", "succeeded")
    assert all(execution == "running" for execution, _ in seen[:-1])


async def test_cli_controls_end_to_end(env: WorkflowEnvironment, store: Store,  # noqa: F811
                                       monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """`slipway approve` / `status` against the test server: the CLI runs in a thread with its
    own event loop (as in a terminal) while the worker runs in the test's loop."""
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    get_settings.cache_clear()
    app = f"shop-{uuid.uuid4().hex[:8]}"
    ok(f"app register {app} --ready --approver lead --approver ana")
    ok(f"env add {app} prod")

    def cli_run(command: str, token: str = "") -> Any:
        return runner.invoke(cli, shlex.split(command), env={"SLIPWAY_TOKEN": token})

    _, ana_token = create_token(store, "ana")
    _, lead_token = create_token(store, "lead")
    # The worker checks proofs with the secret the CLI signs them with (the state directory's).
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=get_settings().approval_signing_secret())
    runner_, queue = worker(env, world)
    async with runner_:
        handle = await start(env, ReleaseRequest(app=app, env=ENV, requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        shown = await asyncio.to_thread(cli_run, f"status {app} prod")
        assert shown.exit_code == 0, shown.output
        assert "awaiting approval from lead, ana (requested by ana)" in shown.stdout
        no_token = await asyncio.to_thread(cli_run, f"approve {app} prod --as lead")
        assert no_token.exit_code == 1
        assert no_token.stderr.startswith("error: approve needs your API token")
        four_eyes = await asyncio.to_thread(cli_run, f"approve {app} prod --as ana", ana_token)
        assert four_eyes.exit_code == 1 and four_eyes.stdout == ""
        assert four_eyes.stderr.startswith("error: approve refused: four eyes: ana requested")
        assert len(four_eyes.stderr.strip().splitlines()) == 1
        # ana, holding only her own token, says she is lead: the worker sees through it.
        forged = await asyncio.to_thread(cli_run, f"approve {app} prod --as lead", ana_token)
        assert forged.exit_code == 1
        assert forged.stderr.startswith("error: approve refused: the proof of lead's approve is "
                                        "not signed by an active token of lead")
        assert (await handle.query(ReleaseWorkflow.status)).awaiting == "approval"
        # Both refusals are on record, with who and why.
        history = await asyncio.to_thread(cli_run, f"release history {app} prod")
        assert history.exit_code == 0, history.output
        assert "refused" in history.stdout and "four eyes" in history.stdout
        assert "the proof of lead's" in history.stdout  # the forgery, refused by the worker
        approved = await asyncio.to_thread(
            cli_run, f"approve {app} prod --as lead --comment go", lead_token)
        assert approved.exit_code == 0, approved.output
        assert f"approve {app}@{ENV}: lead approved {app}@{ENV} v2" in approved.stdout
        watched = await asyncio.to_thread(cli_run, f"status {app} prod --watch")
        assert watched.exit_code == 0, watched.output
        assert "stage succeeded" in watched.stdout and "workflow completed" in watched.stdout
        await handle.result()
    get_settings.cache_clear()


async def test_cli_signal_tokens_and_train_approvals_are_bound_to_the_run_waiting(
    env: WorkflowEnvironment, store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`approve --print-token` prints a proof for the run waiting now (a signal with it
    approves); `train approve` signs for the train's run; neither carries the token."""
    monkeypatch.setenv("SLIPWAY_TEMPORAL_ADDRESS", env.client.service_client.config.target_host)
    get_settings.cache_clear()
    app = f"shop-{uuid.uuid4().hex[:8]}"
    ok(f"app register {app} --ready --approver lead --approver ana")
    ok(f"env add {app} prod")
    _, lead_token = create_token(store, "lead")
    world = FakeWorld(current_version=1, versions=[1], approval_required=True, store=store,
                      signing_secret=get_settings().approval_signing_secret())

    def cli_run(command: str) -> Any:
        return runner.invoke(cli, shlex.split(command), env={"SLIPWAY_TOKEN": lead_token})

    runner_, queue = worker(env, world)
    async with runner_:
        handle = await start(env, ReleaseRequest(app=app, env=ENV, requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        printed = await asyncio.to_thread(
            cli_run, f"approve {app} prod --as lead --print-token --comment signal")
        assert printed.exit_code == 0, printed.output
        assert f"(run {handle.result_run_id}, sha256:new)" in " ".join(printed.stdout.split())
        body = printed.stdout.strip().splitlines()[-1]
        assert lead_token not in printed.stdout
        await handle.signal("approve", ApprovalInput.model_validate_json(body))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
        events = [e.message for e in (await handle.query(ReleaseWorkflow.status)).events]
        assert "approved by lead (via signal, token lead): signal" in events

        name = f"t-{uuid.uuid4().hex[:6]}"
        train = await env.client.start_workflow(
            TrainWorkflow.run, TrainRequest(name=name, requested_by="ana", members=[
                TrainMember(app=f"a{uuid.uuid4().hex[:6]}", env="prod", image="reg/a:2"),
                TrainMember(app=f"b{uuid.uuid4().hex[:6]}", env="prod", image="reg/b:2")]),
            id=train_workflow_id(name), task_queue=queue)
        for _ in range(400):
            if (await train.query(TrainWorkflow.status)).awaiting == "approval":
                break
            await asyncio.sleep(0.05)
        approved = await asyncio.to_thread(cli_run, f"train approve {name} --as lead")
        assert approved.exit_code == 0, approved.output
        assert f"lead approved train {name}" in approved.stdout
        assert (await train.result()).state == ReleaseState.SUCCEEDED
    get_settings.cache_clear()
