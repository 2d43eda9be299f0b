"""Read one number from an HTTP endpoint's JSON answer (smoke and integration-test services).

The field is a dotted path (``data.error_rate``, ``checks.0.latency``); a boolean counts as
1/0 so ``{"ok": true}`` can be judged with ``min: 1``.
"""

from __future__ import annotations

from typing import Any

import httpx

REQUEST_TIMEOUT_SECONDS = 10.0


class WebMetricError(RuntimeError):
    """The endpoint could not be read, or its answer holds no number at the field."""


def read_field(url: str, field: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> float:
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        raise WebMetricError(f"cannot reach {url}: {type(error).__name__}: {error}") from error
    if response.status_code >= 400:
        raise WebMetricError(f"{url} answered HTTP {response.status_code}")
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
    raise WebMetricError(f"field {field!r} holds {value!r}, not a number")
