"""A restarted HAProxy starts with its recorded servers, weights and drains in its config and
serves from its first accepted connection; a running one is adopted untouched.

Real Debian haproxy, loopback HTTP backends, kill -9 by pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integrations.haproxy.process import HEALTH_CHECK_OPTIONS
from integrations.haproxy.router import HaproxyRouter
from tests.integrations.haproxy import test_config
from tests.integrations.haproxy.test_router import Backend, _stop_all, backends, router
from tests.support.hermetic import lb_port_start
from tests.support.load_spans import REFUSED, concurrent_requests, wait_exited

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy"),
]
__all__ = ["backends", "router"]  # fixtures shared with the router tests

KEY = "shop-prod-local"


@pytest.fixture
def port() -> int:
    return lb_port_start(span=1)


@pytest.fixture
def serving(router: HaproxyRouter, backends: dict[str, Backend], port: int) -> Iterator[str]:
    """KEY's frontend with a (weight 100), b (weight 50) and c (draining)."""
    router.ensure_frontend(KEY, port, health_path=None)
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
    router.add_server(KEY, "b", "127.0.0.1", backends["b"].port, weight=50)
    router.add_server(KEY, "c", "127.0.0.1", backends["c"].port)
    router.drain(KEY, "c")
    yield f"http://127.0.0.1:{port}/"


def state(router: HaproxyRouter) -> dict[str, tuple[int, int, str]]:
    return {s.name: (s.port, s.weight, s.admin_state) for s in router.servers(KEY)}


def server_lines(router: HaproxyRouter) -> list[str]:
    """The baseline's servers in the config (not the lane slots)."""
    return test_config.server_lines(router.config_path(KEY).read_text())


def kill9(router: HaproxyRouter) -> float:
    pid = int(router.pid_path(KEY).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    return wait_exited(pid)


def test_every_runtime_change_is_written_into_the_config(
        router: HaproxyRouter, backends: dict[str, Backend], serving: str) -> None:
    a, b, c = (backends[name].port for name in "abc")
    assert server_lines(router) == [f"server a 127.0.0.1:{a} weight 100",
                                    f"server b 127.0.0.1:{b} weight 50",
                                    f"server c 127.0.0.1:{c} weight 0  "
                                    "# draining (recorded weight 100)"]
    router.set_weight(KEY, "b", 20)
    router.remove_server(KEY, "a")
    router.add_server(KEY, "c", "127.0.0.1", c, weight=10)  # back in rotation
    assert server_lines(router) == [f"server b 127.0.0.1:{b} weight 20",
                                    f"server c 127.0.0.1:{c} weight 10"]
    assert {name: (e.port, e.weight, e.state) for name, e in router.intended(KEY).items()} == {
        "b": (b, 20, "ready"), "c": (c, 10, "ready")}
    assert state(router) == {"b": (b, 20, "ready"), "c": (c, 10, "ready")}


def test_a_killed_daemon_restarts_serving_from_its_first_connection(
        router: HaproxyRouter, backends: dict[str, Backend], serving: str) -> None:
    before = state(router)
    old_pid = int(router.pid_path(KEY).read_text())
    kill9(router)
    assert router.restart_if_dead(KEY)
    # The very first request to the new daemon: served, by a server in rotation.
    first = httpx.get(serving, timeout=5)
    assert (first.status_code, first.text) in {(200, "a"), (200, "b")}
    with httpx.Client(timeout=5) as client:
        answers = Counter(client.get(serving).text for _ in range(60))
    assert set(answers) == {"a", "b"} and answers["a"] > answers["b"], answers  # 100:50
    assert int(router.pid_path(KEY).read_text()) != old_pid

    # The config gave the draining server weight 0; the record's drain and weight come back.
    assert state(router)["c"][1:] == (0, "ready")
    assert router.restore(KEY) == ["c"]
    assert state(router) == before
    assert router.restore(KEY) == []  # in line: nothing to do


def test_a_restart_takes_the_live_addresses(
        router: HaproxyRouter, backends: dict[str, Backend], serving: str) -> None:
    kill9(router)
    # a's replica answers elsewhere now (restarted by its engine); c's is not running.
    live = {"a": ("127.0.0.1", backends["c"].port), "b": ("127.0.0.1", backends["b"].port)}
    assert router.restart_if_dead(KEY, live)
    assert [line.split()[1:3] for line in server_lines(router)] == [
        ["a", f"127.0.0.1:{backends['c'].port}"], ["b", f"127.0.0.1:{backends['b'].port}"]]
    assert {s.name: s.port for s in router.servers(KEY)} == {
        "a": backends["c"].port, "b": backends["b"].port}
    # Still recorded: c comes back with its replica; a is recorded where it answers now.
    assert {name: e.port for name, e in router.intended(KEY).items()} == {
        "a": backends["c"].port, "b": backends["b"].port, "c": backends["c"].port}


def test_a_running_daemon_is_adopted_untouched(
        router: HaproxyRouter, backends: dict[str, Backend], serving: str, port: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pid = int(router.pid_path(KEY).read_text())
    config = router.config_path(KEY).read_text()
    sent: list[str] = []
    original = HaproxyRouter._send

    def recording(self: HaproxyRouter, key: str, command: str) -> str:
        sent.append(command)
        return original(self, key, command)

    monkeypatch.setattr(HaproxyRouter, "_send", recording)
    # What a worker that starts does (the reconciler): nothing but looking.
    live = {name: ("127.0.0.1", backends[name].port) for name in "abc"}
    assert not router.restart_if_dead(KEY, live)
    assert router.restore(KEY, live) == []
    assert not router.sync_config(KEY)
    assert not router.ensure_frontend(KEY, port, None)
    assert sent and all(command.startswith("show ") for command in sent), sent
    assert int(router.pid_path(KEY).read_text()) == pid
    assert router.config_path(KEY).read_text() == config


def test_health_checked_servers_serve_at_once_after_a_restart(
        router: HaproxyRouter, backends: dict[str, Backend], port: int) -> None:
    router.ensure_frontend(KEY, port, health_path="/healthz")
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
    assert HEALTH_CHECK_OPTIONS in server_lines(router)[0]
    kill9(router)
    assert router.restart_if_dead(KEY)
    # Servers in the config start UP: no wait for `rise` checks before the first request.
    response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert (response.status_code, response.text) == (200, "a")


def test_kill9_under_load_fails_only_what_was_in_flight_or_refused(
        router: HaproxyRouter, backends: dict[str, Backend], serving: str) -> None:
    """The reconciler's restart done at once: every failed request was either open when the
    daemon died or refused while nothing listened; no 503 from an empty backend."""
    with concurrent_requests(serving, clients=4, max_seconds=30) as spans:
        time.sleep(0.5)
        killed = time.monotonic()
        dead = kill9(router)
        assert router.restart_if_dead(KEY)
        listening = time.monotonic()
        time.sleep(0.5)
    failed = spans.failures()
    in_flight = spans.in_flight(killed, dead)
    refused = [s for s in failed if s.outcome == REFUSED]
    print(f"\nkill -9 under 4 clients: {len(spans.items)} requests, {len(failed)} failed "
          f"({len(in_flight)} in flight at the kill, {len(refused)} refused in the "
          f"{listening - dead:.3f} s nothing listened); outcomes {dict(spans.counts())}")
    # A failure that is not a refusal was open when the daemon died; refusals happen only
    # while nothing listens; nothing fails once the new daemon listens.
    assert all(s in in_flight for s in failed if s.outcome != REFUSED), failed
    assert len(failed) <= len(in_flight) + len(refused)
    assert all(s.sent <= listening for s in refused)
    assert {s.outcome for s in spans.after(listening)} <= {"200 a", "200 b"}


@pytest.fixture
def keeper(tmp_path: Path) -> Iterator[HaproxyRouter]:
    """A router of the process that keeps the load balancers: it holds their sockets."""
    keeping = HaproxyRouter(tmp_path / "keeper", hold_listeners=True)
    yield keeping
    _stop_all(keeping)


def test_a_keeper_holding_the_socket_fails_only_what_was_in_flight(
        keeper: HaproxyRouter, backends: dict[str, Backend], port: int) -> None:
    """kill -9 with the keeper's socket held: requests sent while no daemon runs (here a
    0.3 s gap, ~3× what the keeper needs) wait in the backlog and are answered by the
    daemon started again; only those the dead daemon held fail."""
    keeper.ensure_frontend(KEY, port, health_path=None)
    keeper.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
    url = f"http://127.0.0.1:{port}/"
    with concurrent_requests(url, clients=4, max_seconds=30) as spans:
        time.sleep(0.5)
        killed = time.monotonic()
        dead = kill9(keeper)
        time.sleep(0.3)
        assert keeper.restart_if_dead(KEY)
        listening = time.monotonic()
        time.sleep(0.5)
    failed = spans.failures()
    in_flight = spans.in_flight(killed, dead)
    waited = [s for s in spans.snapshot() if dead < s.sent < listening]
    print(f"\nkill -9, socket held: {len(spans.items)} requests, {len(failed)} failed "
          f"({len(in_flight)} in flight at the kill); {len(waited)} sent in the "
          f"{listening - dead:.3f} s without a daemon, answered: "
          f"{Counter(s.outcome for s in waited)}")
    assert all(s in in_flight for s in failed), failed
    assert not [s for s in failed if s.outcome == REFUSED]
    assert waited and all(s.outcome == "200 a" for s in waited)


def test_a_stopped_environment_refuses_again(keeper: HaproxyRouter, port: int) -> None:
    keeper.ensure_frontend(KEY, port, health_path=None)
    keeper.stop(KEY)  # on purpose: the held socket goes with it
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
