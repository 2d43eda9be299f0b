"""Spent approval proofs (migration 0009, ``approval_use``): a proof counts once, whichever
worker checks it, and the record survives the run and the process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from catalogue.approvals import check_approval
from catalogue.store import Store
from schemas.approvals import release_subject, sign_proof
from schemas.models import VerifyApprovalInput
from starter.service.tokens import create_token, hash_token
from tests.catalogue.test_migrations import upgrade_to

SECRET = "catalogue-test-signing-secret"


def test_0009_adds_the_spent_proofs_with_a_unique_nonce(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to(store, "0008")
    store.migrate()
    row = ("INSERT INTO approval_use (nonce, user, workflow_id, run_id, decision, via, token, "
           "used_by, used_at) VALUES ('n1', 'lead', 'w', 'r', 'approve', 'cli', 'lead', 'k', "
           "'2026-12-05 10:00:00')")
    with store.engine.begin() as db:
        db.execute(text(row))
    with store.engine.begin() as db, pytest.raises(IntegrityError):
        db.execute(text(row))


def test_two_workers_checking_one_proof_at_once_let_it_count_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalogue.db'}"
    _, token = create_token(Store(url), "lead")
    subject = release_subject("release:shop:prod@local", "run-1", "reg/shop:2", "sha256:2", 7)
    proof = sign_proof(SECRET, hash_token(token), "lead", subject, "approve", "cli", time.time())
    data = VerifyApprovalInput(proof=proof, user="lead", release=subject.workflow_id,
                               decision="approve", app="shop", env="prod@local",
                               subject=subject)

    workers = [Store(url) for _ in range(4)]  # four workers' connections
    for worker in workers:
        worker.migrate()  # as each does at start (alembic is not for threads)

    def check(worker: int) -> bool:
        return check_approval(workers[worker], data, time.time(), SECRET,
                              used_by=f"worker-{worker}").ok

    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(check, range(4)))
    assert sorted(verdicts) == [False, False, False, True]
    # Later, by any worker: still spent.
    late = check_approval(workers[0], data, time.time(), SECRET, used_by="worker-9")
    assert not late.ok and "already used on release:shop:prod@local (run run-1…)" in late.reason
    # The catalogue holds token hashes, not the secret: a proof signed without it fails.
    guessed = sign_proof("guess", hash_token(token), "lead", subject, "approve", "cli",
                         time.time())
    refused = check_approval(workers[1], data.model_copy(update={"proof": guessed}),
                             time.time(), SECRET)
    assert not refused.ok and "not signed by an active token of lead" in refused.reason
