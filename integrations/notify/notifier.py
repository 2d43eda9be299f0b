"""Notifiers: where release and lane news goes.

``console`` (default) logs it; ``dingtalk`` posts markdown to a DingTalk robot, signed with
the robot's secret (``timestamp`` + ``sign`` query parameters, HMAC-SHA256 as DingTalk
specifies); ``webhook`` posts ``{"title", "text"}`` JSON to any URL. Secrets are read by
credential name at send time and never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import urllib.parse
from collections.abc import Callable
from typing import Protocol

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger("slipway.notify")


class Notifier(Protocol):
    def send(self, title: str, text: str) -> None: ...


class NotifierSettings(BaseSettings):
    """``SLIPWAY_NOTIFIER`` picks the notifier; the URL and a credential name go with it."""

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore")

    notifier: str = "console"  # console | dingtalk | webhook
    notify_url: str = ""  # the robot's or webhook's URL (without the secret)
    notify_credential: str = "notify"  # name; value: DingTalk signing secret / webhook token


class NotifyError(Exception):
    """The chat robot or webhook refused the message."""


class ConsoleNotifier:
    """Writes notifications as log lines; the default when no chat robot is configured."""

    def send(self, title: str, text: str) -> None:
        logger.info("%s: %s", title, text)


def dingtalk_signature(secret: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(secret, "<ts>\\n<secret>")), URL-quoted."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


class DingTalkNotifier:
    """Markdown messages to a DingTalk group robot, signed when a secret is configured."""

    def __init__(self, url: str, secret: Callable[[], str]) -> None:
        self.url = url
        self.secret = secret

    def send(self, title: str, text: str) -> None:
        url, secret = self.url, self.secret()
        if secret:
            stamp = int(time.time() * 1000)
            url += f"{'&' if '?' in url else '?'}timestamp={stamp}&sign=" \
                f"{dingtalk_signature(secret, stamp)}"
        markdown = {"title": title, "text": f"### {title}\n\n{text}"}
        body = {"msgtype": "markdown", "markdown": markdown}
        response = httpx.post(url, json=body, timeout=10)
        answer = response.json() if response.headers.get("content-type", "").startswith(
            "application/json") else {}
        if response.status_code != 200 or answer.get("errcode", 0) != 0:
            raise NotifyError(f"DingTalk refused the message: HTTP {response.status_code} "
                              f"{answer.get('errmsg', '')}".strip())


class WebhookNotifier:
    """``{"title", "text"}`` JSON to a URL, with a bearer token when one is configured."""

    def __init__(self, url: str, token: Callable[[], str]) -> None:
        self.url = url
        self.token = token

    def send(self, title: str, text: str) -> None:
        token = self.token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(self.url, json={"title": title, "text": text}, headers=headers,
                              timeout=10)
        if response.status_code >= 300:
            raise NotifyError(f"webhook {self.url} answered HTTP {response.status_code}")


def build_notifier(settings: NotifierSettings, credential: Callable[[str], str]) -> Notifier:
    """The configured notifier; an unknown kind or a missing URL is a configuration error."""
    def secret() -> str:
        return credential(settings.notify_credential)

    if settings.notifier == "console":
        return ConsoleNotifier()
    if not settings.notify_url:
        raise ValueError(f"SLIPWAY_NOTIFIER={settings.notifier} needs SLIPWAY_NOTIFY_URL")
    if settings.notifier == "dingtalk":
        return DingTalkNotifier(settings.notify_url, secret)
    if settings.notifier == "webhook":
        return WebhookNotifier(settings.notify_url, secret)
    raise ValueError(f"unknown SLIPWAY_NOTIFIER {settings.notifier!r}: use console, dingtalk "
                     "or webhook")
