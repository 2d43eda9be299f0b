"""Per-version traffic figures from HAProxy's `show stat`: the ``haproxy`` analysis provider.

Server names carry the version (``v3-0``, ``v3-1``), so summing a version's servers gives
its requests and 5xx answers. HAProxy's counters only grow (until the process restarts), so
a figure for an interval is the difference to the counters read at the interval's start.
"""

from __future__ import annotations

from pydantic import BaseModel

from integrations.haproxy.traffic import version_prefix

_RESPONSE_CLASSES = ("hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other")


class VersionCounters(BaseModel):
    """A version's cumulative answers, and its servers' average response time (ms)."""

    requests: float = 0
    errors: float = 0
    response_time_ms: float | None = None

    def as_list(self) -> list[float]:
        return [self.requests, self.errors]

    def since(self, earlier: list[float] | None) -> VersionCounters:
        """The figures of the interval after ``earlier``; a restarted HAProxy (counters
        lower than before) counts from zero."""
        if not earlier or earlier[0] > self.requests or earlier[1] > self.errors:
            return self
        return VersionCounters(requests=self.requests - earlier[0],
                               errors=self.errors - earlier[1],
                               response_time_ms=self.response_time_ms)


def version_counters(stats: dict[str, dict[str, str]], version: int) -> VersionCounters | None:
    """Sum the rows of ``version``'s servers; None when the version has no server."""
    rows = [row for name, row in stats.items() if name.startswith(version_prefix(version))]
    if not rows:
        return None
    requests = errors = weighted_time = 0.0
    for row in rows:
        answered = sum(_int(row.get(column)) for column in _RESPONSE_CLASSES)
        requests += answered
        errors += _int(row.get("hrsp_5xx"))
        # rtime: average over the server's last 1024 requests; weight servers by traffic.
        weighted_time += _int(row.get("rtime")) * max(answered, 1)
    weight = sum(max(sum(_int(r.get(c)) for c in _RESPONSE_CLASSES), 1) for r in rows)
    return VersionCounters(requests=requests, errors=errors,
                           response_time_ms=weighted_time / weight)


def figure(query: str, counters: VersionCounters) -> tuple[float | None, int]:
    """The value ``query`` names (see schemas.analysis.HAPROXY_QUERIES) and its sample."""
    sample = int(counters.requests)
    if query == "requests":
        return counters.requests, sample
    if query == "error_rate":
        return (counters.errors / counters.requests if counters.requests else None), sample
    if query == "response_time_ms":
        return (counters.response_time_ms if counters.requests else None), sample
    raise ValueError(f"unknown haproxy query {query!r}")


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0
