"""HTTP to Slipway's server with the standard library only (``http.client``): a command's
JSON-lines stream, and small JSON requests. Kept this small so that ``slipway`` starts in a
few tens of milliseconds; the server speaks plain HTTP/1.1 (chunked for streams)."""

from __future__ import annotations

import http.client
import json
import os
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT = 10.0


class ServerUnreachable(RuntimeError):
    """No answer from the server at all (refused, unknown host, timeout)."""


class ServerRefused(RuntimeError):
    """The server answered with an error status; ``status`` and the reason it gave."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _connection(url: str) -> tuple[http.client.HTTPConnection, str]:
    parts = urlsplit(url)
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return kind(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT), parts.path


def _reason(response: http.client.HTTPResponse) -> str:
    body = response.read().decode(errors="replace")
    try:
        detail = json.loads(body).get("detail", body)
    except (ValueError, AttributeError):
        detail = body
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(str(item.get("msg", item)) for item in detail)
    return str(detail).strip() or response.reason


def traceparent() -> str:
    """The W3C trace context this request starts or continues: ``TRACEPARENT`` from the
    environment (a CI job's or a script's trace), else a new trace. What the server starts
    for the command joins it (integrations/tracing.py)."""
    given = os.environ.get("TRACEPARENT", "")
    if given:
        return given
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def request(url: str, token: str, method: str, path: str, body: Any = None,
            stream: bool = False) -> http.client.HTTPResponse:
    """Send one request; the response when its status is 2xx, else ServerRefused."""
    connection, prefix = _connection(url)
    headers = {"Accept": "application/json", "traceparent": traceparent()}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        connection.request(method, prefix + path, body=data, headers=headers)
        response = connection.getresponse()
    except OSError as error:
        connection.close()
        raise ServerUnreachable(str(error) or type(error).__name__) from error
    if response.status >= 300:
        reason = _reason(response)
        connection.close()
        raise ServerRefused(response.status, reason)
    if stream and connection.sock is not None:
        # A command may follow a release for as long as it runs: no read deadline.
        connection.sock.settimeout(None)
    return response


def get_json(url: str, token: str, path: str) -> Any:
    with request(url, token, "GET", path) as response:
        return json.loads(response.read())


def frames(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines response, as they arrive."""
    with response:
        while line := response.readline():
            if line.strip():
                yield json.loads(line)
