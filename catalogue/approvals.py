"""Checking an approval proof against the catalogue: the approver's active tokens, their
scope (a token limited to some applications approves only releases of those, and a train only
when it covers every member), the spent proofs (a proof counts once, in any run), and an audit
event for every refusal (who, what, why, through which door; never the proof)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from catalogue.scopes import outside_scope
from catalogue.store import Store, audit
from catalogue.tables import Application, Release, Train
from catalogue.tokens import ApiToken, ApprovalUse
from schemas.approvals import (
    Decision,
    ProofCheck,
    TokenKey,
    read_claims,
    train_apps,
    verify_proof,
)
from schemas.models import ApprovalVerdict, VerifyApprovalInput
from schemas.scopes import out_of_scope
from schemas.trains import train_workflow_id


def token_keys(store: Store, user: str) -> list[TokenKey]:
    """The active tokens of ``user`` as the verifier sees them."""
    with store.session() as session:
        rows = session.exec(select(ApiToken).where(
            ApiToken.user == user, ApiToken.revoked == False)).all()  # noqa: E712
    return [TokenKey(name=row.name, user=row.user, hash=row.hash, roles=row.role_set(),
                     scope=row.scope()) for row in rows]


def approval_apps(store: Store, data: VerifyApprovalInput) -> list[str]:
    """The applications an approval decides on: a release's application, every member of a
    train. Read from the catalogue's record of the run the proof is bound to (the release or
    train row, keyed by its run id), else from what the waiting workflow states."""
    run_id = data.subject.run_id if data.subject is not None else ""
    is_train = data.release.startswith(train_workflow_id(""))
    with store.session() as session:
        if is_train:
            train = session.exec(select(Train).where(Train.run_id == run_id)).first()
            if train is not None:
                return [str(member.get("app", "")) for member in train.members]
        else:
            release = session.exec(select(Release).where(Release.run_id == run_id)).first()
            app = session.get(Application, release.app_id) if release is not None else None
            if app is not None:
                return [app.name]
    if is_train:  # the members the subject names
        return train_apps(data.subject) if data.subject is not None else []
    # A release's workflow id is release:<app>:<env>.
    return [data.app or data.release.partition(":")[2].partition(":")[0]]


def check_scope(store: Store, data: VerifyApprovalInput, check: ProofCheck,
                keys: list[TokenKey]) -> ProofCheck:
    """``check`` when the token that signed the proof may act on every application the
    approval decides on; else the refusal naming them and the token's scope."""
    key = next((key for key in keys if key.name == check.token and key.user == data.user),
               None)
    if key is None:
        return ProofCheck(False, f"the token that signed {data.user}'s {data.decision} is no "
                                 "longer active")
    outside = outside_scope(store, key.scope, approval_apps(store, data))
    if not outside:
        return check
    return ProofCheck(False, f"{data.user}'s {data.decision} cannot count: "
                             + out_of_scope(key.name, key.user, key.scope, outside))


def record_refusal(store: Store, user: str, app: str, env: str, what: str, reason: str,
                   door: str) -> None:
    """A ``release.refused`` audit event: who, what, why, through which door."""
    with store.session() as session:
        audit(session, "release.refused", actor=user, app=app, env=env, refused=what,
              reason=reason, door=door)
        session.commit()


def spend_proof(store: Store, data: VerifyApprovalInput, check: ProofCheck,
                used_by: str) -> ProofCheck:
    """Record the accepted proof's nonce as spent, in one insert that the unique nonce makes
    atomic: of two checks of one proof (two runs, two workers) exactly one gets it. The same
    ``used_by`` (a retry of the verifying activity whose answer was lost) gets it again."""
    subject = data.subject
    assert subject is not None
    with store.session() as session:
        session.add(ApprovalUse(nonce=check.nonce, user=data.user, workflow_id=data.release,
                                run_id=subject.run_id, decision=data.decision, via=check.via,
                                token=check.token, used_by=used_by))
        try:
            session.commit()
            return check
        except IntegrityError:
            session.rollback()
        spent = session.exec(select(ApprovalUse).where(
            ApprovalUse.nonce == check.nonce)).first()
    if spent is not None and used_by and spent.used_by == used_by:
        return check
    where = (f" on {spent.workflow_id} (run {spent.run_id[:8]}…) at "
             f"{spent.used_at:%Y-%m-%d %H:%M} UTC" if spent is not None else "")
    return ProofCheck(False, f"the proof of {data.user}'s {data.decision} was already "
                             f"used{where}: a proof counts once; sign a new one")


def check_approval(store: Store, data: VerifyApprovalInput, now: float, secret: str,
                   used_by: str = "") -> ApprovalVerdict:
    """Verify ``data.proof`` for ``data.subject`` (the run and what it carries) with the
    approver's active tokens and the deployment's signing ``secret``, and that the token's
    scope covers the release's application (a train's: every member's); spend it when it
    counts. ``used_by`` names the verifying activity (its retries are not replays). A refusal
    is recorded as a ``release.refused`` audit event."""
    decision: Decision = "reject" if data.decision == "reject" else "approve"
    if data.subject is None:
        check = ProofCheck(False, f"the {decision} cannot be checked: this workflow does not "
                                  "say which run and content it asks to approve")
    else:
        keys = token_keys(store, data.user)
        check = verify_proof(data.proof, data.user, data.subject, decision, now, keys,
                             set(data.used_nonces), secret)
        if check.ok:
            check = check_scope(store, data, check, keys)
        if check.ok:
            check = spend_proof(store, data, check, used_by)
    if not check.ok:
        claims = read_claims(data.proof)
        record_refusal(store, data.user, data.app, data.env, decision, check.reason,
                       claims.via if claims else "unsigned")
    return ApprovalVerdict(ok=check.ok, reason=check.reason, via=check.via, token=check.token,
                           nonce=check.nonce)
