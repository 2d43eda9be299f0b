"""Per-version figures from `show stat` rows: summed by server name, per interval."""

from __future__ import annotations

from integrations.haproxy.stats import VersionCounters, figure, version_counters


def row(ok: int, errors: int, rtime: int) -> dict[str, str]:
    return {"hrsp_1xx": "0", "hrsp_2xx": str(ok), "hrsp_3xx": "0", "hrsp_4xx": "1",
            "hrsp_5xx": str(errors), "hrsp_other": "0", "rtime": str(rtime)}


STATS = {"v1-0": row(90, 0, 10), "v1-1": row(90, 0, 30), "v2-0": row(85, 10, 300),
         "v12-0": row(5, 5, 1)}


def test_a_version_sums_its_own_servers_only() -> None:
    old = version_counters(STATS, 1)
    assert old == VersionCounters(requests=182, errors=0, response_time_ms=20)
    new = version_counters(STATS, 2)  # v12-0 is not a server of v2
    assert new is not None and (new.requests, new.errors) == (96, 10)
    assert version_counters(STATS, 3) is None


def test_an_interval_counts_from_the_previous_counters_and_a_restart_from_zero() -> None:
    now = VersionCounters(requests=150, errors=12, response_time_ms=40)
    assert now.since([100, 2]) == VersionCounters(requests=50, errors=10, response_time_ms=40)
    assert now.since([]) == now
    assert now.since([400, 20]) == now  # HAProxy restarted: its counters began again


def test_figures_of_an_interval() -> None:
    counters = VersionCounters(requests=200, errors=20, response_time_ms=310)
    assert figure("error_rate", counters) == (0.1, 200)
    assert figure("response_time_ms", counters) == (310, 200)
    assert figure("requests", counters) == (200, 200)
    assert figure("error_rate", VersionCounters()) == (None, 0)  # no traffic, no rate
