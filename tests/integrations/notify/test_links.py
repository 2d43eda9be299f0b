"""Approval links: who gets them, that they verify, and that they stay out of logs."""

from __future__ import annotations

import logging
import time

import pytest

from integrations.notify.links import ApprovalLinks
from schemas.approvals import TokenKey, link_key, verify_proof
from schemas.models import ApprovalLinkRequest
from schemas.settings import Settings
from starter.api.approval_links import RedactApprovalLinks
from worker import notify_activities

REQUEST = ApprovalLinkRequest(release="release:shop:prod@local", approvers=["lead", "ana"],
                              requested_by="ana", seconds=3600)


def test_links_go_to_every_approver_but_the_requester_and_verify() -> None:
    text = ApprovalLinks("https://slipway.example/", lambda: "s3cret").markdown(REQUEST)
    assert "- lead: [approve](https://slipway.example/approval/sal1." in text
    assert "- ana" not in text and "valid 1 h" in text
    proof = text.split("/approval/")[1].split(")")[0]
    key = TokenKey("approval link", "lead", link_key("s3cret"), frozenset({"approve"}))
    check = verify_proof(proof, "lead", REQUEST.release, "approve", time.time(), [key], set())
    assert check.ok and check.via == "link"


def test_without_a_secret_there_are_no_links() -> None:
    assert ApprovalLinks("https://slipway.example", lambda: "").markdown(REQUEST) == ""


@pytest.mark.parametrize(("notifier", "linked"), [("console", False), ("webhook", True)])
def test_a_console_notifier_never_gets_links(monkeypatch: pytest.MonkeyPatch, notifier: str,
                                             linked: bool) -> None:
    monkeypatch.setenv("SLIPWAY_NOTIFIER", notifier)
    monkeypatch.setenv("SLIPWAY_NOTIFY_URL", "http://127.0.0.1:1/hook")
    activities = notify_activities(Settings(receiver_url="https://slipway.example"))
    assert (activities.links is not None) == linked


def test_access_logs_show_approval_links_redacted() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "POST", "/approval/sal1.abc.def?x=1", "1.1", 200),
                               None)
    assert RedactApprovalLinks().filter(record)
    assert "sal1" not in record.getMessage()
    assert "/approval/<redacted>?x=1" in record.getMessage()
