"""Ask a Prometheus server for one number: an instant query over ``/api/v1/query``.

Canary analysis needs a single figure per version, so a query must come back as a scalar or
as at most one series: aggregate in PromQL (``sum``, ``histogram_quantile``, …) rather than
have Slipway guess how to combine series.
"""

from __future__ import annotations

import math
from typing import Any

import httpx

QUERY_TIMEOUT_SECONDS = 10.0


class PrometheusError(RuntimeError):
    """Prometheus could not be asked, or refused the query (``bad`` says which)."""

    def __init__(self, message: str, *, bad_query: bool = False) -> None:
        super().__init__(message)
        self.bad_query = bad_query


class PrometheusClient:
    def __init__(self, address: str, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        self.address = address.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str) -> float | None:
        """The query's value now; None when it returns no series (no data yet)."""
        data = self._ask(promql)
        result_type, result = data.get("resultType"), data.get("result")
        if result_type == "scalar" and isinstance(result, list):
            return _number(result[1])
        if result_type != "vector":
            raise PrometheusError(f"the query returned a {result_type}, not one number: use an "
                                  "instant vector or scalar expression", bad_query=True)
        if not result or not isinstance(result, list):
            return None
        if len(result) > 1:
            raise PrometheusError(f"the query returned {len(result)} series; aggregate them to "
                                  "one (sum, avg, max, histogram_quantile)", bad_query=True)
        return _number(result[0]["value"][1])

    def check(self, promql: str) -> None:
        """Raise PrometheusError when Prometheus refuses ``promql`` (syntax, types)."""
        self._ask(promql)

    def _ask(self, promql: str) -> dict[str, Any]:
        url = f"{self.address}/api/v1/query"
        try:
            response = httpx.get(url, params={"query": promql}, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise PrometheusError(f"cannot reach Prometheus at {self.address}: "
                                  f"{type(error).__name__}: {error}") from error
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.address} answered HTTP "
                                  f"{response.status_code} without JSON") from None
        if body.get("status") != "success":
            # 400 bad_data is the query's fault; 422/503 (execution, timeout) are not.
            bad = body.get("errorType") == "bad_data"
            raise PrometheusError(f"Prometheus refused the query: {body.get('errorType')}: "
                                  f"{body.get('error')}", bad_query=bad)
        return body.get("data") or {}


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        # Never the value itself: it would reach the catalogue, history and alerts.
        raise PrometheusError("Prometheus answered a sample that is not a number") from None
    return None if math.isnan(value) else value
