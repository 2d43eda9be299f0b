"""Checking an approval proof against the catalogue: the approver's active tokens, and an
audit event for every refusal (who, what, why, through which door; never the proof)."""

from __future__ import annotations

from sqlmodel import select

from catalogue.store import Store, audit
from catalogue.tokens import ApiToken
from schemas.approvals import (
    Decision,
    ProofCheck,
    TokenKey,
    is_link,
    link_key,
    read_claims,
    verify_proof,
)
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


def _link_keys(store: Store, user: str, link_secret: str) -> tuple[list[TokenKey], str]:
    """The key an approval link of ``user`` is checked with, or why none counts: links are
    off, or the user holds no active token with the approve role (left, or lost the role)."""
    if not link_secret:
        return [], "approval links are not enabled here (no link secret): approve with a token"
    if not any("approve" in key.roles for key in token_keys(store, user)):
        return [], (f"{user} holds no active API token with the approve role, so their "
                    "approval links no longer count")
    return [TokenKey("approval link", user, link_key(link_secret), frozenset({"approve"}))], ""


def check_approval(store: Store, data: VerifyApprovalInput, now: float,
                   link_secret: str = "") -> ApprovalVerdict:
    """Verify ``data.proof`` (signed by a token, or an approval link); a refusal is recorded
    as a ``release.refused`` audit event."""
    decision: Decision = "reject" if data.decision == "reject" else "approve"
    if is_link(data.proof):
        keys, why_not = _link_keys(store, data.user, link_secret)
    else:
        keys, why_not = token_keys(store, data.user), ""
    check = (ProofCheck(False, why_not) if why_not else
             verify_proof(data.proof, data.user, data.release, decision, now, keys,
                          set(data.used_nonces)))
    if not check.ok:
        claims = read_claims(data.proof)
        record_refusal(store, data.user, data.app, data.env, decision, check.reason,
                       claims.via if claims else "unsigned")
    return ApprovalVerdict(ok=check.ok, reason=check.reason, via=check.via, token=check.token,
                           nonce=check.nonce)
