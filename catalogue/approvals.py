"""Checking an approval proof against the catalogue: the approver's active tokens, the
spent proofs (a proof counts once, in any run), and an audit event for every refusal (who,
what, why, through which door; never the proof)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from catalogue.store import Store, audit
from catalogue.tokens import ApiToken, ApprovalUse
from schemas.approvals import Decision, ProofCheck, TokenKey, read_claims, verify_proof
from schemas.models import ApprovalVerdict, VerifyApprovalInput


def token_keys(store: Store, user: str) -> list[TokenKey]:
    """The active tokens of ``user`` as the verifier sees them."""
    with store.session() as session:
        rows = session.exec(select(ApiToken).where(
            ApiToken.user == user, ApiToken.revoked == False)).all()  # noqa: E712
    return [TokenKey(name=row.name, user=row.user, hash=row.hash, roles=row.role_set())
            for row in rows]


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
    approver's active tokens and the deployment's signing ``secret``; spend it when it
    counts. ``used_by`` names the verifying activity (its retries are not replays). A refusal
    is recorded as a ``release.refused`` audit event."""
    decision: Decision = "reject" if data.decision == "reject" else "approve"
    if data.subject is None:
        check = ProofCheck(False, f"the {decision} cannot be checked: this workflow does not "
                                  "say which run and content it asks to approve")
    else:
        check = verify_proof(data.proof, data.user, data.subject, decision, now,
                             token_keys(store, data.user), set(data.used_nonces), secret)
        if check.ok:
            check = spend_proof(store, data, check, used_by)
    if not check.ok:
        claims = read_claims(data.proof)
        record_refusal(store, data.user, data.app, data.env, decision, check.reason,
                       claims.via if claims else "unsigned")
    return ApprovalVerdict(ok=check.ok, reason=check.reason, via=check.via, token=check.token,
                           nonce=check.nonce)
