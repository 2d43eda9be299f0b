"""Approval proofs: how an approval shows who sent it.

An approval (or rejection) counts only with a proof signed by one of the approver's API
tokens. The proof names the user, the release (its workflow id), the decision, the door it
came through (``cli``, ``receiver``, ``signal``), an expiry and a nonce, and carries an
HMAC-SHA256 over those claims keyed by the token's SHA-256 hash, the only form of the token
the catalogue keeps. So the worker can check it against the catalogue, nobody without the
token (or read access to the catalogue) can make one, and the token itself never travels:
not in the Update, not in workflow history. A proof is single use: the workflow remembers
the nonces it has accepted.

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

PROOF_PREFIX = "sap1"
# Approval links (in the notification of an approval request) carry proofs signed with the
# deployment's link secret instead of the approver's token.
LINK_PREFIX = "sal1"
DEFAULT_PROOF_SECONDS = 15 * 60
Decision = Literal["approve", "reject"]
Door = Literal["cli", "receiver", "signal", "link"]


class ProofClaims(BaseModel):
    """What a proof says; the signature covers every field."""

    user: str
    release: str  # the release workflow's id
    decision: Decision
    via: Door
    exp: int  # unix seconds
    nonce: str


@dataclass(frozen=True)
class TokenKey:
    """An active API token as the verifier sees it: its name, hash and roles."""

    name: str
    user: str
    hash: str
    roles: frozenset[str]


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


def _mac(key_hash: str, body: str) -> str:
    return _b64(hmac.new(key_hash.encode(), body.encode(), hashlib.sha256).digest())


def sign_proof(key_hash: str, user: str, release: str, decision: Decision, via: Door,
               now: float, seconds: int = DEFAULT_PROOF_SECONDS,
               prefix: str = PROOF_PREFIX) -> str:
    """A proof for ``user``'s ``decision`` on ``release``, valid ``seconds`` from ``now``,
    signed with the token whose SHA-256 hash is ``key_hash``."""
    claims = ProofClaims(user=user, release=release, decision=decision, via=via,
                         exp=int(now) + seconds, nonce=secrets.token_hex(8))
    body = _b64(json.dumps(claims.model_dump(), sort_keys=True).encode())
    return f"{prefix}.{body}.{_mac(key_hash, body)}"


def read_claims(proof: str) -> ProofClaims | None:
    """The claims of a well-formed proof (not yet verified), else None."""
    parts = proof.split(".")
    if len(parts) != 3 or parts[0] not in (PROOF_PREFIX, LINK_PREFIX):
        return None
    try:
        return ProofClaims.model_validate_json(_unb64(parts[1]))
    except (ValueError, ValidationError):
        return None


def link_key(secret: str) -> str:
    """The MAC key of approval links, from the deployment's link secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_link(proof: str) -> bool:
    return proof.startswith(f"{LINK_PREFIX}.")


def sign_link(secret: str, user: str, release: str, decision: Decision, now: float,
              seconds: int) -> str:
    """An approval link's proof: ``user``'s ``decision`` on ``release``, valid ``seconds``."""
    return sign_proof(link_key(secret), user, release, decision, "link", now, seconds,
                      prefix=LINK_PREFIX)


HOW_TO_GET_ONE = ("approve with your API token: `SLIPWAY_TOKEN=slw_… slipway approve APP ENV`, "
                  "or POST /api/releases/APP/ENV/approve with it as bearer token; for a "
                  "signal, put the token printed by `slipway approve APP ENV --print-token` "
                  "in its \"token\" field (an admin creates API tokens with `slipway token "
                  "create USER --role approve`)")
SIGNAL_TOKEN_SECONDS = 30 * 60


def verify_proof(proof: str, user: str, release: str, decision: Decision, now: float,
                 tokens: list[TokenKey], used_nonces: set[str]) -> ProofCheck:
    """Whether ``proof`` shows that ``user`` (holding an active token with the ``approve``
    role) sent ``decision`` for ``release``, unexpired and not used before."""
    if not proof:
        return ProofCheck(False, f"{decision} by {user} carries no proof: {HOW_TO_GET_ONE}")
    claims = read_claims(proof)
    if claims is None:
        return ProofCheck(False, f"the proof of {user}'s {decision} is malformed: "
                                 f"{HOW_TO_GET_ONE}")
    if claims.user != user:
        return ProofCheck(False, f"the proof was signed for {claims.user}, not {user}")
    if claims.release != release or claims.decision != decision:
        return ProofCheck(False, f"the proof is for {claims.decision} of {claims.release}, "
                                 f"not {decision} of {release}")
    if claims.exp < now:
        return ProofCheck(False, f"the proof of {user}'s {decision} has expired; sign a new one")
    if claims.nonce in used_nonces:
        return ProofCheck(False, f"the proof of {user}'s {decision} was already used")
    body = proof.split(".")[1]
    signature = proof.split(".")[2]
    for token in tokens:
        if token.user == user and hmac.compare_digest(_mac(token.hash, body), signature):
            if "approve" not in token.roles:
                return ProofCheck(False, f"token {token.name} of {user} lacks the approve role")
            return ProofCheck(True, via=claims.via, token=token.name, nonce=claims.nonce)
    return ProofCheck(False, f"the proof of {user}'s {decision} is not signed by an active "
                             f"token of {user}: {HOW_TO_GET_ONE}")
