"""DingTalk and webhook notifiers against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.notify.notifier import (
    ConsoleNotifier,
    DingTalkNotifier,
    NotifierSettings,
    NotifyError,
    WebhookNotifier,
    build_notifier,
)

SECRET = "SEC-robot-secret"


class Receiver:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        self.url = ""


@pytest.fixture
def robot() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.calls.append({"path": self.path, "body": body,
                                "auth": self.headers.get("Authorization")})
            payload = json.dumps(state.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/robot/send?access_token=abc"
    yield state
    server.shutdown()


def test_dingtalk_markdown_is_signed(robot: Receiver) -> None:
    DingTalkNotifier(robot.url, lambda: SECRET).send("release shop@prod succeeded", "baseline v3")
    call = robot.calls[0]
    assert call["body"] == {"msgtype": "markdown", "markdown": {
        "title": "release shop@prod succeeded",
        "text": "### release shop@prod succeeded\n\nbaseline v3"}}
    query = urllib.parse.parse_qs(urllib.parse.urlparse(call["path"]).query)
    assert query["access_token"] == ["abc"]
    stamp = query["timestamp"][0]
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected]
    assert SECRET not in call["path"]


def test_dingtalk_refusal_is_an_error(robot: Receiver) -> None:
    robot.answer = {"errcode": 310000, "errmsg": "sign not match"}
    with pytest.raises(NotifyError, match="sign not match"):
        DingTalkNotifier(robot.url, lambda: SECRET).send("t", "x")


def test_webhook_posts_json_with_a_bearer_token(robot: Receiver) -> None:
    WebhookNotifier(robot.url, lambda: "tok").send("lane pay-42 pending deletion", "renew it")
    assert robot.calls[0]["body"] == {"title": "lane pay-42 pending deletion",
                                      "text": "renew it"}
    assert robot.calls[0]["auth"] == "Bearer tok"


def test_build_notifier_by_settings() -> None:
    secrets = {"notify": SECRET}.get
    assert isinstance(build_notifier(NotifierSettings(), lambda n: ""), ConsoleNotifier)
    chosen = build_notifier(NotifierSettings(notifier="dingtalk", notify_url="http://127.0.0.1/"),
                            lambda name: secrets(name) or "")
    assert isinstance(chosen, DingTalkNotifier)
    with pytest.raises(ValueError, match="needs SLIPWAY_NOTIFY_URL"):
        build_notifier(NotifierSettings(notifier="webhook"), lambda n: "")
    with pytest.raises(ValueError, match="unknown SLIPWAY_NOTIFIER"):
        build_notifier(NotifierSettings(notifier="pager", notify_url="x"), lambda n: "")
