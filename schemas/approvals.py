"""Approval proofs: who sent an approval, for exactly which release, once.

An approval (or rejection) counts only with a proof. The proof names the user, the release
(its workflow id **and run id**), what the release carries (the target image by digest, else
its reference, and the change id; for a train its record and members), the decision, the
door it came through (``cli``, ``receiver``, ``signal``, ``link``), an expiry and a nonce,
and carries an HMAC-SHA256 over those claims.

The MAC key combines two things (:func:`proof_key`): the approver's API token (through its
SHA-256, the form the catalogue keeps) and the deployment's **approval signing secret**, which
only Slipway's processes hold (``SLIPWAY_CREDENTIALS``, or a file in the state directory).
So whoever reads the catalogue's token rows still cannot sign, the token itself never travels
(not in the Update, not in workflow history), and the secret never enters history either.

A proof does not travel: it is bound to one run and its content, so a copy read from a run's
history (the Web UI shows Update inputs) is refused by any other run; it expires; and its
nonce is spent in the catalogue by the verifying activity (``approval_use``), which outlives
the run, so it counts once, ever.

Approval links (in approval notifications) are *not* credentials: a link names a release run,
an approver and a decision, signed with the link secret so the page shows nothing forged;
deciding through it takes the approver's own API token, and the receiver then signs a proof
as above (door ``link``).

Pure functions only: the CLI and the receiver sign, an activity verifies (it reads the
tokens), the workflow stays deterministic.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ValidationError

from schemas.scopes import TokenScope

PROOF_PREFIX = "sap2"
# Link format of links that name a run; links are no credentials (see the module's text).
LINK_PREFIX = "sal2"
# Proofs and links of earlier versions: bound to no run, or credentials on their own.
LEGACY_PREFIXES = ("sap1", "sal1")
DEFAULT_PROOF_SECONDS = 15 * 60
Decision = Literal["approve", "reject"]
Door = Literal["cli", "receiver", "signal", "link"]


class ApprovalSubject(BaseModel):
    """What an approval decides, as the workflow waiting for it states it (its ``status``
    query) and checks it: one run of one workflow, and what that run carries."""

    workflow_id: str
    run_id: str
    # A release: its target image by digest (by reference when it has none); a train: its
    # members.
    target: str
    # A release: its change id ("" without one); a train: ``train <id>``.
    change: str = ""

    def describe(self) -> str:
        return self.target + (f" (change {self.change})" if self.change else "")


def release_subject(workflow_id: str, run_id: str, image: str, digest: str,
                    change_id: int | None) -> ApprovalSubject:
    """The subject of a release's approval: its run, its target image and its change."""
    return ApprovalSubject(workflow_id=workflow_id, run_id=run_id, target=digest or image,
                           change="" if change_id is None else str(change_id))


def train_subject(workflow_id: str, run_id: str, train_id: int,
                  members: list[str]) -> ApprovalSubject:
    """The subject of a train's approval: its run, its record and its members (``app@env``)."""
    return ApprovalSubject(workflow_id=workflow_id, run_id=run_id, target=", ".join(members),
                           change=f"train {train_id}")


def train_apps(subject: ApprovalSubject) -> list[str]:
    """The applications of a train's subject (its members, ``app@type@cluster``)."""
    return [member.strip().partition("@")[0] for member in subject.target.split(",")
            if member.strip()]


class ProofClaims(BaseModel):
    """What a proof says; the signature covers every field."""

    user: str
    release: str  # the workflow id
    run: str  # the run id
    target: str
    change: str = ""
    decision: Decision
    via: Door
    exp: int  # unix seconds
    nonce: str


class LinkClaims(BaseModel):
    """What an approval link names; its signature only shows the link was made by Slipway."""

    user: str
    release: str
    run: str
    decision: Decision
    exp: int


@dataclass(frozen=True)
class TokenKey:
    """An active API token as the verifier sees it: its name, hash, roles and scope (the
    applications it may act on; the caller checks it once the proof is verified)."""

    name: str
    user: str
    hash: str
    roles: frozenset[str]
    scope: TokenScope = TokenScope()


@dataclass(frozen=True)
class ProofCheck:
    """The verdict on a proof; ``reason`` says what to do when it is refused."""

    ok: bool
    reason: str = ""
    via: str = ""
    token: str = ""
    nonce: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, body: str) -> str:
    return _b64(hmac.new(key.encode(), body.encode(), hashlib.sha256).digest())


def proof_key(secret: str, token_hash: str) -> str:
    """The MAC key of ``token_hash``'s proofs: the signing secret combined with the token.

    Neither alone makes it: the catalogue holds token hashes but not the secret."""
    if not secret:
        raise ValueError("no approval signing secret")
    return hmac.new(secret.encode(), b"slipway approval proof v2\x00" + token_hash.encode(),
                    hashlib.sha256).hexdigest()


def sign_proof(secret: str, token_hash: str, user: str, subject: ApprovalSubject,
               decision: Decision, via: Door, now: float,
               seconds: int = DEFAULT_PROOF_SECONDS) -> str:
    """A proof for ``user``'s ``decision`` on ``subject`` (one run and its content), valid
    ``seconds`` from ``now``, signed with the token whose SHA-256 is ``token_hash`` and the
    deployment's signing ``secret``."""
    claims = ProofClaims(user=user, release=subject.workflow_id, run=subject.run_id,
                         target=subject.target, change=subject.change, decision=decision,
                         via=via, exp=int(now) + seconds, nonce=secrets.token_hex(16))
    body = _b64(json.dumps(claims.model_dump(), sort_keys=True).encode())
    return f"{PROOF_PREFIX}.{body}.{_mac(proof_key(secret, token_hash), body)}"


def read_claims(proof: str) -> ProofClaims | None:
    """The claims of a well-formed proof (not yet verified), else None."""
    parts = proof.split(".")
    if len(parts) != 3 or parts[0] != PROOF_PREFIX:
        return None
    try:
        return ProofClaims.model_validate_json(_unb64(parts[1]))
    except (ValueError, ValidationError):
        return None


def _link_key(secret: str) -> str:
    return hmac.new(secret.encode(), b"slipway approval link v2", hashlib.sha256).hexdigest()


def sign_link(secret: str, user: str, release: str, run: str, decision: Decision, now: float,
              seconds: int) -> str:
    """An approval link's path segment: ``user``'s ``decision`` on run ``run`` of
    ``release``, valid ``seconds``. Not a credential: using it takes ``user``'s token."""
    claims = LinkClaims(user=user, release=release, run=run, decision=decision,
                        exp=int(now) + seconds)
    body = _b64(json.dumps(claims.model_dump(), sort_keys=True).encode())
    return f"{LINK_PREFIX}.{body}.{_mac(_link_key(secret), body)}"


def read_link(link: str, secret: str) -> LinkClaims | None:
    """The claims of a link made with ``secret`` (expiry not checked), else None."""
    parts = link.split(".")
    if not secret or len(parts) != 3 or parts[0] != LINK_PREFIX:
        return None
    if not hmac.compare_digest(_mac(_link_key(secret), parts[1]), parts[2]):
        return None
    try:
        return LinkClaims.model_validate_json(_unb64(parts[1]))
    except (ValueError, ValidationError):
        return None


HOW_TO_GET_ONE = ("approve with your API token: `SLIPWAY_TOKEN=slw_… slipway approve APP ENV`, "
                  "or POST /api/releases/APP/ENV/approve with it as bearer token; for a "
                  "signal, put the token printed by `slipway approve APP ENV --print-token` "
                  "in its \"token\" field (an admin creates API tokens with `slipway token "
                  "create USER --role approve`)")
SIGNAL_TOKEN_SECONDS = 30 * 60


def _claimed(claims: ProofClaims) -> str:
    """The content a proof claims, worded as :meth:`ApprovalSubject.describe` words it."""
    return ApprovalSubject(workflow_id=claims.release, run_id=claims.run, target=claims.target,
                           change=claims.change).describe()


def _short(run: str) -> str:
    return run[:8] + "…" if len(run) > 8 else run


def verify_proof(proof: str, user: str, subject: ApprovalSubject, decision: Decision,
                 now: float, tokens: list[TokenKey], used_nonces: set[str],
                 secret: str) -> ProofCheck:
    """Whether ``proof`` shows that ``user`` (holding an active token with the ``approve``
    role) sent ``decision`` for ``subject`` (this run, this content), unexpired, not used
    before in this run (the catalogue's record of spent nonces is checked by the caller), and
    signed with ``secret``."""
    if not proof:
        return ProofCheck(False, f"{decision} by {user} carries no proof: {HOW_TO_GET_ONE}")
    if proof.split(".", 1)[0] in LEGACY_PREFIXES:
        return ProofCheck(False, f"the proof of {user}'s {decision} is of an older kind that "
                                 "names no release run: sign a new one with this version "
                                 f"of slipway ({HOW_TO_GET_ONE})")
    claims = read_claims(proof)
    if claims is None:
        return ProofCheck(False, f"the proof of {user}'s {decision} is malformed: "
                                 f"{HOW_TO_GET_ONE}")
    if claims.user != user:
        return ProofCheck(False, f"the proof was signed for {claims.user}, not {user}")
    if claims.release != subject.workflow_id or claims.decision != decision:
        return ProofCheck(False, f"the proof is for {claims.decision} of {claims.release}, "
                                 f"not {decision} of {subject.workflow_id}")
    if claims.run != subject.run_id:
        return ProofCheck(False, f"the proof of {user}'s {decision} was signed for another run "
                                 f"of {claims.release} (run {_short(claims.run)}), not this "
                                 f"one (run {_short(subject.run_id)}): an approval counts for "
                                 "the one release it was given to; sign a new one")
    if claims.target != subject.target or claims.change != subject.change:
        return ProofCheck(False, f"the proof of {user}'s {decision} is for "
                                 f"{_claimed(claims)}, but this release "
                                 f"carries {subject.describe()}: sign a new one")
    if claims.exp < now:
        return ProofCheck(False, f"the proof of {user}'s {decision} has expired; sign a new one")
    if claims.nonce in used_nonces:
        return ProofCheck(False, f"the proof of {user}'s {decision} was already used")
    if not secret:
        return ProofCheck(False, "approvals cannot be checked: this worker has no approval "
                                 "signing secret")
    body, signature = proof.split(".")[1:]
    for token in tokens:
        if token.user == user and hmac.compare_digest(
                _mac(proof_key(secret, token.hash), body), signature):
            if "approve" not in token.roles:
                return ProofCheck(False, f"token {token.name} of {user} lacks the approve role")
            return ProofCheck(True, via=claims.via, token=token.name, nonce=claims.nonce)
    return ProofCheck(False, f"the proof of {user}'s {decision} is not signed by an active "
                             f"token of {user} (with this deployment's approval signing "
                             f"secret): {HOW_TO_GET_ONE}")

