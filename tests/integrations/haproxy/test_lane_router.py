"""Header-routed lanes on a real HAProxy: keyed requests reach the lane's instance, the rest
the baseline; a lane down falls back (or fails closed); routes change with no reload and
survive a restarted daemon."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from integrations.errors import PermanentRuntimeError
from integrations.haproxy.common import HaproxyError
from integrations.haproxy.config import render_config
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.lane_table import LANE_SLOTS, ROUTE_HEADER
from integrations.haproxy.router import HaproxyRouter
from tests.integrations.haproxy.test_router import (
    KEY,
    Backend,
    backends,
    free_port,
    router,
    wait_for,
)
from tests.support.load import failures, request_loop

__all__ = ["backends", "router"]  # fixtures shared with the router tests

pytestmark = pytest.mark.integration


@pytest.fixture
def baseline(router: HaproxyRouter, backends: dict[str, Backend]) -> Iterator[str]:
    """KEY's frontend with backend ``a`` as its baseline; its URL."""
    port = free_port()
    router.ensure_frontend(KEY, port, health_path="/healthz")
    router.add_server(KEY, "v1-0", "127.0.0.1", backends["a"].port)
    yield f"http://127.0.0.1:{port}/"


def answer(url: str, **headers: str) -> tuple[int, str, str]:
    response = httpx.get(url, headers=headers, timeout=5)
    return response.status_code, response.text.strip(), response.headers.get(ROUTE_HEADER, "")


def test_keyed_requests_reach_the_lane_and_the_rest_the_baseline(
        router: HaproxyRouter, backends: dict[str, Backend], baseline: str) -> None:
    pid = router.running_pid(KEY)
    LaneRouter(router).route(KEY, "pay-42", "127.0.0.1", backends["b"].port)
    assert answer(baseline) == (200, "a", "")
    assert answer(baseline, **{"x-slipway-lane": "pay-42"}) == (200, "b", "lane")
    assert answer(baseline, baggage="user=7, slipway-lane=pay-42;ttl=1") == (200, "b", "lane")
    # The header wins over baggage; a lane this environment does not route gets the baseline.
    assert answer(baseline, **{"x-slipway-lane": "other", "baggage": "slipway-lane=pay-42"}) \
        == (200, "a", "baseline")
    assert answer(baseline, baggage="xslipway-lane=pay-42") == (200, "a", "")
    assert router.running_pid(KEY) == pid, "routing a lane must not restart the daemon"


def test_a_lane_down_falls_back_to_the_baseline_unless_it_fails_closed(
        router: HaproxyRouter, backends: dict[str, Backend], baseline: str) -> None:
    lanes = LaneRouter(router)
    lanes.route(KEY, "open", "127.0.0.1", backends["b"].port)
    lanes.route(KEY, "closed", "127.0.0.1", backends["c"].port, fail_closed=True)
    assert answer(baseline, **{"x-slipway-lane": "closed"}) == (200, "c", "lane")
    backends["b"].close()
    backends["c"].close()
    # Health checks take the lanes' servers out within three failed checks (1 s apart).
    assert wait_for(lambda: answer(baseline, **{"x-slipway-lane": "open"})[1] == "a", 10)
    assert answer(baseline, **{"x-slipway-lane": "open"}) == (200, "a", "baseline")
    assert wait_for(lambda: answer(baseline, **{"x-slipway-lane": "closed"})[0] == 503, 10)
    status, text, _ = answer(baseline, **{"x-slipway-lane": "closed"})
    assert "lane closed has no ready instance" in text


def test_routes_change_at_runtime_without_a_failed_request(
        router: HaproxyRouter, backends: dict[str, Backend], baseline: str) -> None:
    lanes = LaneRouter(router)
    pid = router.running_pid(KEY)
    keyed = {"x-slipway-lane": "l1"}
    with request_loop(baseline, max_requests=3000, max_seconds=60, pause=0.005,
                      headers=keyed) as seen, \
            request_loop(baseline, max_requests=3000, max_seconds=60, pause=0.005) as plain:
        for _ in range(3):
            lanes.route(KEY, "l1", "127.0.0.1", backends["b"].port)
            wait_for(lambda: seen["200 b"] > 20, 10)
            lanes.route(KEY, "l1", "127.0.0.1", backends["c"].port)  # a newer version
            wait_for(lambda: seen["200 c"] > 20, 10)
            assert lanes.unroute(KEY, "l1")
            wait_for(lambda before=seen["200 a"]: seen["200 a"] > before + 20, 10)
    assert failures(seen) == {} and failures(plain) == {}, (seen, plain)
    assert seen["200 a"] and seen["200 b"] and seen["200 c"]
    assert set(plain) == {"200 a"}
    assert router.running_pid(KEY) == pid
    assert not lanes.unroute(KEY, "l1")  # already gone: fine


def test_a_restarted_daemon_routes_as_before(
        router: HaproxyRouter, backends: dict[str, Backend], baseline: str) -> None:
    lanes = LaneRouter(router)
    lanes.route(KEY, "l1", "127.0.0.1", backends["b"].port)
    lanes.route(KEY, "l2", "127.0.0.1", backends["c"].port)
    lanes.unroute(KEY, "l2")
    pid = router.running_pid(KEY)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not router.is_running(KEY), 5)
    assert router.restart_if_dead(KEY)
    assert wait_for(lambda: answer(baseline, **{"x-slipway-lane": "l1"})[1] == "b", 10)
    assert answer(baseline, **{"x-slipway-lane": "l2"}) == (200, "a", "baseline")
    # The restarted daemon's map is the file's: the runtime API keeps changing it.
    lanes.route(KEY, "l2", "127.0.0.1", backends["c"].port)
    assert answer(baseline, **{"x-slipway-lane": "l2"}) == (200, "c", "lane")


def test_a_lane_entry_sets_the_key(router: HaproxyRouter, backends: dict[str, Backend]) -> None:
    port = free_port()
    entry_key = "pay-lane-l1"
    LaneRouter(router).set_entry(entry_key, "l1")
    router.ensure_frontend(entry_key, port, health_path=None)
    router.add_server(entry_key, "v1-0", "127.0.0.1", backends["b"].port)
    config = router.config_path(entry_key).read_text()
    assert "set-header x-slipway-lane l1 unless" in config
    # The route header shows the frontend saw the key it set itself.
    assert answer(f"http://127.0.0.1:{port}/") == (200, "b", "lane")


def test_slots_run_out_with_a_clear_error(
        router: HaproxyRouter, backends: dict[str, Backend], baseline: str) -> None:
    lanes = LaneRouter(router)
    for index in range(LANE_SLOTS):
        lanes.route(KEY, f"l{index}", "127.0.0.1", backends["b"].port)
    with pytest.raises(ValueError, match="lane slots of this environment are taken"):
        lanes.route(KEY, "one-too-many", "127.0.0.1", backends["b"].port)
    assert lanes.unroute(KEY, "l3")
    assert lanes.route(KEY, "one-too-many", "127.0.0.1", backends["c"].port).slot == 3
    assert answer(baseline, **{"x-slipway-lane": "one-too-many"})[1] == "c"


def test_routing_on_a_stopped_load_balancer_says_so(router: HaproxyRouter) -> None:
    with pytest.raises(HaproxyError, match="is not running"):
        LaneRouter(router).route("nothing-test-local", "l1", "127.0.0.1", 8080)


def test_a_load_balancer_from_before_lane_routing_says_to_restart_it(
        router: HaproxyRouter, backends: dict[str, Backend]) -> None:
    port = free_port()
    router.ensure_frontend(KEY, port, health_path=None)
    pid = router.running_pid(KEY)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not router.is_running(KEY), 5)
    # The config an older Slipway wrote: no lane map, no slots.
    router.config_path(KEY).write_text(render_config(
        KEY, bind_address="127.0.0.1", bind_port=port, health_path=None, servers={},
        socket_path=router.socket_path(KEY), pid_path=router.pid_path(KEY)))
    router._start_configured(KEY)
    with pytest.raises(PermanentRuntimeError, match="without lane routing.*restart its daemon"):
        LaneRouter(router).route(KEY, "l1", "127.0.0.1", backends["b"].port)
