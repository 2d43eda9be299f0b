"""Who may approve: a proof signed with the approver's own token and the deployment's signing
secret, bound to one run and its content and spent once (a copy from history, a replay, a
forgery from the catalogue's token rows are all refused), the four-eyes rule across identity
forms, expiring proofs, the first decision winning a race, and a token's scope (a token
limited to some applications approves only their releases)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from catalogue.approvals import check_approval
from catalogue.store import Store
from catalogue.tables import Application, AuditEvent
from catalogue.tokens import ApiToken, ApprovalUse
from schemas.approvals import ApprovalSubject, ProofClaims, sign_proof
from schemas.enums import ReleaseState
from schemas.models import ApprovalInput, ReleaseRequest, VerifyApprovalInput
from schemas.trains import TrainMember, TrainRequest, TrainStatus
from starter.service.tokens import create_token, hash_token
from tests.workflows.fakes import (
    SIGNING_SECRET,
    TOKENS,
    FakeWorld,
    signed,
    start,
    subject_of,
    wait_for,
    worker,
)
from workflows.release import ReleaseWorkflow
from workflows.train import TrainWorkflow


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
        here = subject_of(handle.id)
        lead_key = hash_token(TOKENS["lead"])
        elsewhere = sign_proof(SIGNING_SECRET, lead_key, "lead", here.model_copy(
            update={"workflow_id": "release:other:prod@local"}), "approve", "cli", time.time())
        assert "not approve of" in await refused(handle, ApprovalInput(user="lead",
                                                                       proof=elsewhere))
        # For this release, but another image than the one it carries.
        other_image = sign_proof(SIGNING_SECRET, lead_key, "lead", here.model_copy(
            update={"target": "sha256:other"}), "approve", "cli", time.time())
        assert "is for sha256:other, but this release carries sha256:new" in await refused(
            handle, ApprovalInput(user="lead", proof=other_image))
        expired = sign_proof(SIGNING_SECRET, lead_key, "lead", here, "approve", "cli",
                             time.time() - 3600, seconds=60)
        assert "has expired" in await refused(handle, ApprovalInput(user="lead",
                                                                    proof=expired))
        # Signed with lead's token but without the deployment's signing secret.
        no_secret = signed(handle, "lead", secret="a guess")
        assert "is not signed by an active token of lead" in await refused(handle, no_secret)
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval"
        # What an approval of this release is bound to, as signers read it.
        assert status.approval == here and here.run_id == handle.result_run_id
        assert sum("refused" in event.message for event in status.events) == 6
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
        try:
            outcome: object = await handle.result()
        except WorkflowFailureError as failure:
            outcome = failure
        events = [e.message for e in (await handle.query(ReleaseWorkflow.status)).events]
    # Each decision is verified by its own activity, so which proof is verified first
    # depends on the worker's scheduling (a busy machine reorders them): whichever wins, it
    # is the only decision that counts and the other is refused.
    if isinstance(outcome, WorkflowFailureError):
        assert "rejected by bob (via signal, token bob)" in str(outcome.cause)
        assert isinstance(update[0], WorkflowUpdateFailedError)
        assert "already rejected by bob" in str(update[0].cause) or \
            "not waiting for approval" in str(update[0].cause)
    else:
        assert update[0] is None  # lead's Update returned normally
        assert fake.finished[-1].state == ReleaseState.SUCCEEDED
        assert any(message.startswith("approved by lead") for message in events)
        assert not any(message.startswith("rejected by bob") for message in events)


# -- approvals that cannot travel --------------------------------------------------------------


def catalogue(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """A real catalogue with an approve token for lead, ana and bob (user → clear token)."""
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    return store, {user: create_token(store, user)[1] for user in ("lead", "ana", "bob")}


async def proofs_in_history(handle: WorkflowHandle[Any, Any]) -> list[dict[str, Any]]:
    """The approve/reject inputs (user, proof) in a run's history: what anyone who can read
    the Web UI sees."""
    found = []
    for event in (await handle.fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            payloads = request.input.args.payloads
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            payloads = event.workflow_execution_signaled_event_attributes.input.payloads
        else:
            continue
        found += [data for data in (json.loads(p.data) for p in payloads)
                  if isinstance(data, dict) and data.get("proof")]
    return found


def refusals(store: Store) -> list[str]:
    with store.session() as session:
        events = session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "release.refused")).all()
    return [str(event.detail.get("reason", "")) for event in events]


async def test_a_proof_copied_from_run_1s_history_does_not_approve_run_2(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    store, tokens = catalogue(tmp_path)
    fake = world(store=store)
    workflow_id = f"release:shop:prod@{uuid.uuid4().hex[:8]}"  # every run of one environment
    runner, queue = worker(env, fake)
    async with runner:
        first = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app="shop", env="prod@local", image="reg/shop:1",
                                                requested_by="ana", change_id=11),
            id=workflow_id, task_queue=queue)
        await wait_for(first, lambda s: s.awaiting == "approval")
        await first.execute_update(ReleaseWorkflow.approve,
                                   signed(first, "lead", token=tokens["lead"]))
        assert (await first.result()).state == ReleaseState.SUCCEEDED
        copied = (await proofs_in_history(first))[0]
        assert copied["user"] == "lead"

        # Run 2 of the same environment: requested by bob, for another image and change.
        second = await env.client.start_workflow(
            ReleaseWorkflow.run, ReleaseRequest(app="shop", env="prod@local", image="reg/shop:2",
                                                requested_by="bob", change_id=12),
            id=workflow_id, task_queue=queue)
        await wait_for(second, lambda s: s.awaiting == "approval")
        assert second.result_run_id != first.result_run_id
        replayed = ApprovalInput(user="lead", comment="replayed", proof=copied["proof"])
        reason = await refused(second, replayed)
        run_1 = (first.result_run_id or "")[:8]
        assert reason.startswith("the proof of lead's approve was signed for another run of "
                                 f"{workflow_id} (run {run_1}…), not this one")
        # The same copy as a signal from the Web UI: refused too, shown in the events.
        await second.signal("approve", replayed)
        status = await wait_for(second, lambda s: sum("refused" in e.message
                                                      for e in s.events) == 2)
        assert status.awaiting == "approval" and status.stage == "awaiting_approval"
        # Nothing was recorded for run 2 by the copies; lead approves it with a proof of its own.
        assert fake.approvals == ["awaiting", "lead", "awaiting"]
        await second.execute_update(ReleaseWorkflow.approve,
                                    signed(second, "lead", token=tokens["lead"]))
        assert (await second.result()).state == ReleaseState.SUCCEEDED
    assert fake.approvals == ["awaiting", "lead", "awaiting", "lead"]
    assert sum("signed for another run" in reason for reason in refusals(store)) == 2
    with store.session() as session:  # each proof spent once, for the run it was given to
        spent = session.exec(select(ApprovalUse)).all()
    assert [(use.user, use.run_id) for use in spent] == [
        ("lead", first.result_run_id), ("lead", second.result_run_id)]


async def test_the_same_proof_counts_once(env: WorkflowEnvironment, tmp_path: Path) -> None:
    store, tokens = catalogue(tmp_path)
    fake = world(store=store)
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        proof = signed(handle, "lead", token=tokens["lead"])
        await handle.execute_update(ReleaseWorkflow.approve, proof)
        # Once more: refused, by the desk first (the release is not waiting any more) …
        assert "not waiting for approval" in await refused(handle, proof)
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    # … and by the verifier, given the spent proof again for the run it names (as a second
    # worker checking a copy of the same Update would): spent, refused.
    data = VerifyApprovalInput(proof=proof.proof, user="lead", release=handle.id,
                               decision="approve", app="shop", env="prod@local",
                               subject=subject_of(handle.id))
    again = check_approval(store, data, time.time(), SIGNING_SECRET, used_by="another/worker")
    assert not again.ok and again.reason.startswith("the proof of lead's approve was already "
                                                    f"used on {handle.id}")
    # A retry of the activity that spent it (its answer lost) is the same use, not a replay.
    with store.session() as session:
        use = session.exec(select(ApprovalUse)).one()
    assert check_approval(store, data, time.time(), SIGNING_SECRET, used_by=use.used_by).ok
    # Spent proofs are catalogue rows: they outlive the run and the worker.
    with Store(store.url).session() as session:
        assert session.exec(select(ApprovalUse)).one().nonce == use.nonce


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keyed_by(key: str, claims: dict[str, Any], prefix: str) -> str:
    body = _b64(json.dumps(claims, sort_keys=True).encode())
    return f"{prefix}.{body}.{_b64(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())}"


def forged_from_token_row(token_hash: str, subject: ApprovalSubject) -> list[str]:
    """What a reader of the catalogue's ``api_token`` row can make of lead's hash, for the
    right run and content: the old proof (HMAC keyed by the hash, which used to pass), the new
    format keyed by the hash, and the new format with guessed secrets (the hash itself, the
    credential's name)."""
    claims = ProofClaims(user="lead", release=subject.workflow_id, run=subject.run_id,
                         target=subject.target, change=subject.change, decision="approve",
                         via="cli", exp=int(time.time()) + 600, nonce=uuid.uuid4().hex)
    old = {key: value for key, value in claims.model_dump().items()
           if key not in ("run", "target", "change")}
    return [_keyed_by(token_hash, old, "sap1"),
            _keyed_by(token_hash, claims.model_dump(), "sap2"),
            sign_proof(token_hash, token_hash, "lead", subject, "approve", "cli", time.time()),
            sign_proof("approval-signing", token_hash, "lead", subject, "approve", "cli",
                       time.time())]


async def test_a_proof_forged_from_the_catalogues_token_row_is_refused(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    store, tokens = catalogue(tmp_path)
    fake = world(store=store)
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app="shop", env="prod@local",
                                                       requested_by="ana"), queue)
        status = await wait_for(handle, lambda s: s.awaiting == "approval")
        # ana, the requester, reads lead's token row (every CLI user reads the catalogue)…
        with store.session() as session:
            row = session.exec(select(ApiToken).where(ApiToken.user == "lead")).one()
        assert status.approval is not None
        for forged in forged_from_token_row(row.hash, status.approval):
            reason = await refused(handle, ApprovalInput(user="lead", proof=forged))
            assert ("is not signed by an active token of lead" in reason
                    or "of an older kind that names no release run" in reason), reason
        assert (await handle.query(ReleaseWorkflow.status)).awaiting == "approval"
        assert fake.approvals == ["awaiting"]
        # … while lead's own token, with the deployment's secret, approves.
        await handle.execute_update(ReleaseWorkflow.approve,
                                    signed(handle, "lead", token=tokens["lead"]))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    assert len([r for r in refusals(store) if "lead's approve" in r]) == 4


async def test_a_train_proof_from_run_1s_history_does_not_approve_run_2(
    env: WorkflowEnvironment,
) -> None:
    fake = world()
    apps = [f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"]
    request = TrainRequest(name=f"t-{uuid.uuid4().hex[:6]}", requested_by="ana", members=[
        TrainMember(app=app, env="prod", image=f"slipway/{app}:v2") for app in apps])
    runner, queue = worker(env, fake)

    async def waiting(handle: WorkflowHandle[Any, Any]) -> TrainStatus:
        for _ in range(400):
            status: TrainStatus = await handle.query(TrainWorkflow.status)
            if status.awaiting == "approval":
                return status
            await asyncio.sleep(0.05)
        raise AssertionError("the train never asked for approval")

    async with runner:
        first = await env.client.start_workflow(TrainWorkflow.run, request,
                                                id=f"train:{request.name}", task_queue=queue)
        await waiting(first)
        await first.execute_update(TrainWorkflow.approve, signed(first, "lead"))
        assert (await first.result()).state == ReleaseState.SUCCEEDED
        copied = (await proofs_in_history(first))[0]

        second = await env.client.start_workflow(
            TrainWorkflow.run, request.model_copy(update={"requested_by": "bob"}),
            id=f"train:{request.name}", task_queue=queue)
        status = await waiting(second)
        assert status.approval is not None and status.approval.run_id == second.result_run_id
        with pytest.raises(WorkflowUpdateFailedError) as error:
            await second.execute_update(TrainWorkflow.approve, ApprovalInput(
                user="lead", proof=copied["proof"]))
        assert "signed for another run of train:" in str(error.value.cause)
        assert (await second.query(TrainWorkflow.status)).awaiting == "approval"
        await second.execute_update(TrainWorkflow.approve, signed(second, "lead"))
        assert (await second.result()).state == ReleaseState.SUCCEEDED


# -- authorization per application: a token's scope ---------------------------------------------
# A team lead named as an approver everywhere still cannot approve another team's release with
# a token limited to their own team; a train needs a token covering every member.


def teams(tmp_path: Path, apps: dict[str, str]) -> Store:
    """A real catalogue holding ``apps`` (name → team)."""
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    with store.session() as session:
        for name, team in apps.items():
            session.add(Application(name=name, team=team, approvers=["lead", "ana"]))
        session.commit()
    return store


async def test_a_team_a_leads_token_cannot_approve_a_team_b_release(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    shop = f"shop-{uuid.uuid4().hex[:6]}"
    store = teams(tmp_path, {shop: "retail", "pay": "payments"})
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, retail = create_token(store, "lead", name="lead-retail", teams=["retail"])
    fake = world(store=store)
    runner, queue = worker(env, fake)
    async with runner:
        handle = await start(env, fake, ReleaseRequest(app=shop, env="prod@local",
                                                       requested_by="ana"), queue)
        await wait_for(handle, lambda s: s.awaiting == "approval")
        # lead is an approver of the shop app, but signs with the payments team's token.
        reason = await refused(handle, signed(handle, "lead", token=payments))
        assert reason.startswith("lead's approve cannot count: token lead-pay of lead is "
                                 f"limited to team payments: application {shop} (team "
                                 "retail) is outside its scope")
        status = await handle.query(ReleaseWorkflow.status)
        assert status.awaiting == "approval" and fake.approvals == ["awaiting"]
        assert any("outside its scope" in event.message for event in status.events)
        # The same lead with the retail team's token: approved.
        await handle.execute_update(ReleaseWorkflow.approve,
                                    signed(handle, "lead", token=retail))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
    assert fake.approvals == ["awaiting", "lead"]
    with store.session() as session:
        [use] = session.exec(select(ApprovalUse)).all()
        audited = session.exec(select(AuditEvent).where(
            col(AuditEvent.action) == "release.refused")).all()
    assert use.token == "lead-retail"
    assert [event.app for event in audited] == [shop]
    assert all(payments not in str(event.detail) for event in audited)


async def train_waiting(handle: WorkflowHandle[Any, Any]) -> TrainStatus:
    for _ in range(400):
        status: TrainStatus = await handle.query(TrainWorkflow.status)
        if status.awaiting == "approval":
            return status
        await asyncio.sleep(0.05)
    raise AssertionError("the train never asked for approval")


async def test_a_train_needs_a_token_covering_every_member(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    pay, shop = f"pay-{uuid.uuid4().hex[:6]}", f"shop-{uuid.uuid4().hex[:6]}"
    store = teams(tmp_path, {pay: "payments", shop: "retail"})
    _, payments = create_token(store, "lead", name="lead-pay", teams=["payments"])
    _, unscoped = create_token(store, "lead")  # made without --app/--team: every app
    fake = world(store=store)
    request = TrainRequest(name=f"t-{uuid.uuid4().hex[:6]}", requested_by="ana", members=[
        TrainMember(app=app, env="prod", image=f"slipway/{app}:v2") for app in (pay, shop)])
    runner, queue = worker(env, fake)
    async with runner:
        handle = await env.client.start_workflow(TrainWorkflow.run, request,
                                                 id=f"train:{request.name}", task_queue=queue)
        await train_waiting(handle)
        reason = await refused(handle, signed(handle, "lead", token=payments),
                               TrainWorkflow.approve)
        assert f"application {shop} (team retail) is outside its scope" in reason
        assert (await handle.query(TrainWorkflow.status)).awaiting == "approval"
        await handle.execute_update(TrainWorkflow.approve,
                                    signed(handle, "lead", token=unscoped))
        assert (await handle.result()).state == ReleaseState.SUCCEEDED
