"""Who may approve: a proof signed with the approver's own token, the four-eyes rule across
identity forms, single-use and expiring proofs, and the first decision winning a race."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from schemas.approvals import sign_proof
from schemas.enums import ReleaseState
from schemas.models import ApprovalInput, ReleaseRequest
from starter.service.tokens import hash_token
from tests.workflows.fakes import TOKENS, FakeWorld, signed, start, wait_for, worker
from workflows.release import ReleaseWorkflow


def world(**overrides: object) -> FakeWorld:
    values: dict[str, object] = dict(current_version=1, versions=[1], approval_required=True,
                                     approvers=["lead", "ana", "bob"])
    values.update(overrides)
    return FakeWorld(**values)  # type: ignore[arg-type]


async def refused(handle: object, data: ApprovalInput, update: object = None) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as error:
        await handle.execute_update(update or ReleaseWorkflow.approve, data)  # type: ignore[attr-defined]
    cause = error.value.cause
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[union-attr,attr-defined]
    return str(getattr(cause, "message", cause))


async def test_an_approval_as_someone_else_is_refused_and_the_release_keeps_waiting(
    env: WorkflowEnvironment,
) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        # `--as lead` with nothing to show for it: what anyone reaching Temporal could send.
        bare = await refused(handle, ApprovalInput(user="lead"))
        assert bare.startswith("approve by lead carries no proof: approve with your API token")
        # mallory signs with her own token and claims to be lead.
        forged = await refused(handle, signed(handle, "lead", token=TOKENS["mallory"]))
        assert forged.startswith("the proof of lead's approve is not signed by an active token "
                                 "of lead")
        # A real proof of lead's, but for another release.
        elsewhere = sign_proof(hash_token(TOKENS["lead"]), "lead", "release:other:prod@local",
                               "approve", "cli", time.time())
        assert "not approve of" in await refused(handle, ApprovalInput(user="lead",
                                                                       proof=elsewhere))
        expired = sign_proof(hash_token(TOKENS["lead"]), "lead", handle.id, "approve", "cli",
                             time.time() - 3600, seconds=60)
        assert "has expired" in await refused(handle, ApprovalInput(user="lead",
                                                                    proof=expired))
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval"
        assert sum("refused" in event.message for event in status.events) == 4
        answer = await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        assert answer.startswith("lead approved")
        outcome = await handle.result()
    assert outcome.state == ReleaseState.SUCCEEDED
    assert fake.approvals == ["awaiting", "lead"]


@pytest.mark.parametrize("requester", ["gitlab:ana", "GitLab:Ana", "ANA"])
async def test_four_eyes_holds_across_identity_forms(env: WorkflowEnvironment,
                                                     requester: str) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by=requester), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        reason = await refused(handle, signed(handle, "ana"))
        assert reason.startswith(f"four eyes: ana requested this release (as {requester})")
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "bob"))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED


async def test_two_approvers_racing_the_first_decision_wins(env: WorkflowEnvironment) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        results = await asyncio.gather(
            handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead")),
            handle.execute_update(ReleaseWorkflow.reject, signed(handle, "bob", "reject")),
            return_exceptions=True)
        won = [result for result in results if isinstance(result, str)]
        lost = [result for result in results if isinstance(result, BaseException)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], WorkflowUpdateFailedError)
        assert "already" in str(lost[0].cause) or "not waiting for approval" in str(
            lost[0].cause)
        state = (await handle.query(ReleaseWorkflow.status)).stage
        # The winner's decision is the one the release acts on.
        if won[0].startswith("lead approved"):
            assert (await handle.result()).state == ReleaseState.SUCCEEDED
        else:
            with pytest.raises(WorkflowFailureError) as failure:
                await handle.result()
            assert "rejected by bob" in str(failure.value.cause)
    assert state


async def test_a_signal_with_a_valid_token_approves(env: WorkflowEnvironment) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        # What a person types into the Web UI's signal form: user, comment, token.
        typed = ApprovalInput.model_validate_json(json.dumps(
            {"user": "lead", "comment": "from the UI",
             "token": signed(handle, "lead", via="signal").proof}))
        await handle.signal("approve", typed)
        outcome = await handle.result()
        events = [event.message for event in (await handle.query(ReleaseWorkflow.status)).events]
    assert outcome.state == ReleaseState.SUCCEEDED
    assert "approved by lead (via signal, token lead): from the UI" in events


@pytest.mark.parametrize(("user", "token", "reason"), [
    ("lead", "", "approval by lead refused: approve by lead carries no proof"),
    ("ana", None, "approval by ana refused: four eyes: ana requested this release"),
    ("mallory", None, "approval by mallory refused: mallory is not an approver"),
])
async def test_a_refused_signal_is_shown_and_the_release_keeps_waiting(
    env: WorkflowEnvironment, user: str, token: str | None, reason: str,
) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        data = signed(handle, user, via="signal")
        await handle.signal("approve", ApprovalInput(user=user, proof=data.proof
                                                     if token is None else token))
        status = await wait_for(handle, lambda s: any("refused" in e.message for e in s.events))
        refusal = next(e.message for e in status.events if "refused" in e.message)
        assert refusal.startswith(reason)
        if token == "":
            assert "--print-token" in refusal  # how to get one
        assert status.awaiting == "approval"
        metadata = await handle.query("__temporal_workflow_metadata")
        assert reason in str(metadata)  # the Web UI's current details
        await handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead"))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED


async def test_a_signal_and_an_update_racing_the_first_decision_wins(
    env: WorkflowEnvironment,
) -> None:
    fake = world()
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        # bob's reject signal lands first; lead's approve Update arrives while it is checked.
        await handle.signal("reject", signed(handle, "bob", "reject", via="signal"))
        update = await asyncio.gather(
            handle.execute_update(ReleaseWorkflow.approve, signed(handle, "lead")),
            return_exceptions=True)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert "rejected by bob (via signal, token bob)" in str(failure.value.cause)
    assert isinstance(update[0], WorkflowUpdateFailedError)
    assert "already rejected by bob" in str(update[0].cause) or \
        "not waiting for approval" in str(update[0].cause)
