"""Approval links: who gets them, what they name (one run), and that they stay out of logs."""

from __future__ import annotations

import logging
import time

import pytest

from integrations.notify.links import ApprovalLinks
from schemas.approvals import read_link
from schemas.models import ApprovalLinkRequest
from schemas.settings import Settings
from starter.api.approval_links import RedactApprovalLinks
from worker import notify_activities

REQUEST = ApprovalLinkRequest(release="release:shop:prod@local", run="run-1",
                              approvers=["lead", "ana"], requested_by="ana", seconds=3600)


def test_links_go_to_every_approver_but_the_requester_and_name_one_run() -> None:
    text = ApprovalLinks("https://slipway.example/", lambda: "s3cret").markdown(REQUEST)
    assert "- lead: [approve](https://slipway.example/approval/sal2." in text
    assert "- ana" not in text and "valid 1 h" in text and "asks for your API token" in text
    link = text.split("/approval/")[1].split(")")[0]
    claims = read_link(link, "s3cret")
    assert claims is not None
    assert (claims.user, claims.release, claims.run, claims.decision) == (
        "lead", REQUEST.release, "run-1", "approve")
    assert claims.exp >= time.time() + 3590
    assert read_link(link, "another secret") is None  # made here, or not shown at all


def test_without_a_secret_or_a_run_there_are_no_links() -> None:
    assert ApprovalLinks("https://slipway.example", lambda: "").markdown(REQUEST) == ""
    assert ApprovalLinks("https://slipway.example", lambda: "s3cret").markdown(
        REQUEST.model_copy(update={"run": ""})) == ""


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
