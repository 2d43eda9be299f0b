"""Read one number from an HTTP endpoint's JSON answer (smoke and integration-test services).

The field is a dotted path (``data.error_rate``, ``checks.0.latency``); a boolean counts as
1/0 so ``{"ok": true}`` can be judged with ``min: 1``. Only hosts on the allow-list are asked
(``integrations/web/hosts.py``), redirects only within the same origin, and an error never
quotes what the endpoint answered: a value that is not a number is "not a number".
"""

from __future__ import annotations

from typing import Any

import httpx

from integrations.web.hosts import WebHostRefused, WebHosts

REQUEST_TIMEOUT_SECONDS = 10.0
MAX_REDIRECTS = 5


class WebMetricError(RuntimeError):
    """The endpoint could not be read, or its answer holds no number at the field."""


def read_field(url: str, field: str, timeout: float = REQUEST_TIMEOUT_SECONDS,
               hosts: WebHosts | None = None) -> float:
    """The number at ``field`` of the JSON ``url`` answers. ``url`` must pass ``hosts``
    (default: loopback only); a redirect is followed only to the same scheme, host and
    port."""
    allowed = hosts or WebHosts()
    try:
        allowed.check(url, resolve=True)
    except WebHostRefused as refused:
        raise WebMetricError(f"refused {url}: {refused}") from None
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            response = httpx.get(current, timeout=timeout, follow_redirects=False)
        except httpx.HTTPError as error:
            # A protocol error may quote what the server sent: name its kind only.
            local = isinstance(error, httpx.ConnectError | httpx.TimeoutException)
            raise WebMetricError(f"cannot reach {url}: {type(error).__name__}"
                                 + (f": {error}" if local else "")) from error
        if not response.is_redirect:
            break
        following = str(response.next_request.url) if response.next_request else ""
        if not following or not allowed.same_origin(url, following):
            raise WebMetricError(f"{url} answered HTTP {response.status_code}, a redirect to "
                                 "another host: not followed")
        current = following
    else:
        raise WebMetricError(f"{url} redirected more than {MAX_REDIRECTS} times")
    if response.status_code >= 400:
        raise WebMetricError(f"{url} answered HTTP {response.status_code}")
    if response.status_code >= 300:
        raise WebMetricError(f"{url} answered HTTP {response.status_code}, not JSON")
    try:
        document: Any = response.json()
    except ValueError:
        raise WebMetricError(f"{url} did not answer JSON") from None
    return number_at(document, field)


def number_at(document: Any, field: str) -> float:
    value = document
    for part in field.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise WebMetricError(f"the answer has no field {field!r} (missing at {part!r})")
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    # Never the value itself: it would reach the catalogue, history and alerts.
    raise WebMetricError(f"field {field!r} holds {_kind(value)}: not a number")


def _kind(value: Any) -> str:
    return {str: "a text", dict: "an object", list: "a list", type(None): "null"}.get(
        type(value), "a value")
