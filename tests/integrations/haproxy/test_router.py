"""HaproxyRouter against the real Debian haproxy binary and small loopback HTTP backends."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from integrations.haproxy.router import HaproxyError, HaproxyRouter

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy"),
]

KEY = "shop-prod-local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Backend:
    """A loopback HTTP server answering its own name; `/slow?s=N` sleeps N seconds first."""

    def __init__(self, name: str) -> None:
        self.name = name
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                url = urlsplit(self.path)
                if url.path == "/slow":
                    time.sleep(float(parse_qs(url.query).get("s", ["1"])[0]))
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backends() -> Iterator[dict[str, Backend]]:
    started: dict[str, Backend] = {}
    for name in ("a", "b", "c"):
        started[name] = Backend(name)
    yield started
    for backend in started.values():
        backend.close()


def _stop_all(router: HaproxyRouter) -> None:
    # Any key that got a config may own a daemon: kill them all, even after a failed test.
    for cfg in router.dir.glob("*.cfg"):
        router.stop(cfg.stem)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HaproxyRouter]:
    router = HaproxyRouter(tmp_path / "state")
    yield router
    _stop_all(router)


@pytest.fixture
def frontend(router: HaproxyRouter) -> Iterator[str]:
    """Base URL of a running frontend for KEY."""
    port = free_port()
    router.ensure_frontend(KEY, port)
    yield f"http://127.0.0.1:{port}"


def get(url: str, timeout: float = 10.0) -> httpx.Response:
    return httpx.get(url, timeout=timeout)


def wait_for(predicate, timeout: float = 5.0, poll: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return predicate()


def test_ensure_frontend_is_idempotent(router: HaproxyRouter) -> None:
    port = free_port()
    router.ensure_frontend(KEY, port)
    pid = int(router.pid_path(KEY).read_text())
    router.ensure_frontend(KEY, port)
    assert int(router.pid_path(KEY).read_text()) == pid
    assert router.is_running(KEY)
    assert router.servers(KEY) == []
    # No servers yet: HAProxy answers 503 itself.
    assert get(f"http://127.0.0.1:{port}/").status_code == 503
    # Another port for a running key is refused rather than silently ignored.
    with pytest.raises(HaproxyError, match="already listens"):
        router.ensure_frontend(KEY, free_port())


def test_port_taken_is_a_clear_error(router: HaproxyRouter) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(HaproxyError, match="Address already in use"):
            router.ensure_frontend("other-env", port)
    assert not router.is_running("other-env")


def test_second_environment_cannot_share_a_port(router: HaproxyRouter) -> None:
    # HAProxy's default SO_REUSEPORT would let two daemons share a port: must be refused.
    port = free_port()
    router.ensure_frontend("env-one", port)
    with pytest.raises(HaproxyError, match="Address already in use"):
        router.ensure_frontend("env-two", port)
    assert router.is_running("env-one")


def test_traffic_goes_to_added_server(
    router: HaproxyRouter, frontend: str, backends: dict[str, Backend]
) -> None:
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port, weight=100)
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port, weight=100)  # idempotent
    [server] = router.servers(KEY)
    assert (server.name, server.address, server.port, server.weight) == (
        "a",
        "127.0.0.1",
        backends["a"].port,
        100,
    )
    assert server.admin_state == "ready"
    assert server.operational_state == "running"
    assert not server.draining
    for _ in range(5):
        response = get(frontend + "/")
        assert response.status_code == 200
        assert response.text == "a"


def test_add_server_replaces_a_moved_server(
    router: HaproxyRouter, frontend: str, backends: dict[str, Backend]
) -> None:
    router.add_server(KEY, "v1-0", "127.0.0.1", backends["a"].port)
    assert get(frontend + "/").text == "a"
    router.add_server(KEY, "v1-0", "127.0.0.1", backends["b"].port, weight=50)
    [server] = router.servers(KEY)
    assert (server.port, server.weight) == (backends["b"].port, 50)
    assert {get(frontend + "/").text for _ in range(5)} == {"b"}


def test_weights_split_traffic(
    router: HaproxyRouter, frontend: str, backends: dict[str, Backend]
) -> None:
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port, weight=75)
    router.add_server(KEY, "b", "127.0.0.1", backends["b"].port, weight=25)
    with httpx.Client(timeout=5.0) as client:
        counts = Counter(client.get(frontend + "/").text for _ in range(200))
    assert counts["a"] + counts["b"] == 200
    assert 120 <= counts["a"] <= 180, counts

    router.set_weight(KEY, "a", 0)
    assert {s.name: s.weight for s in router.servers(KEY)} == {"a": 0, "b": 25}
    with httpx.Client(timeout=5.0) as client:
        assert {client.get(frontend + "/").text for _ in range(20)} == {"b"}


def test_drain_lets_in_flight_request_finish(
    router: HaproxyRouter, frontend: str, backends: dict[str, Backend]
) -> None:
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
    slow: dict[str, httpx.Response] = {}
    thread = threading.Thread(
        target=lambda: slow.setdefault("response", get(frontend + "/slow?s=1.5")), daemon=True
    )
    thread.start()
    try:
        assert wait_for(lambda: router.servers(KEY)[0].current_sessions == 1)
        router.add_server(KEY, "b", "127.0.0.1", backends["b"].port)
        router.drain(KEY, "a")
        a = next(s for s in router.servers(KEY) if s.name == "a")
        assert a.draining and a.admin_state == "drain" and a.current_sessions == 1
        assert not router.wait_idle(KEY, "a", timeout=0.2, poll=0.05)
        # New requests avoid the drained server while its slow request is still running.
        assert {get(frontend + "/").text for _ in range(20)} == {"b"}
        assert router.wait_idle(KEY, "a", timeout=10.0, poll=0.05)
    finally:
        thread.join(timeout=15)
    assert slow["response"].status_code == 200
    assert slow["response"].text == "a"
    router.remove_server(KEY, "a")
    assert [s.name for s in router.servers(KEY)] == ["b"]


def test_remove_server_is_idempotent(
    router: HaproxyRouter, frontend: str, backends: dict[str, Backend]
) -> None:
    router.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
    router.add_server(KEY, "b", "127.0.0.1", backends["b"].port)
    router.remove_server(KEY, "a")
    router.remove_server(KEY, "a")
    router.remove_server(KEY, "never-added")
    assert [s.name for s in router.servers(KEY)] == ["b"]
    assert {get(frontend + "/").text for _ in range(5)} == {"b"}
    assert router.wait_idle(KEY, "a", timeout=0.1)  # absent: nothing in flight


def test_runtime_errors_carry_command_and_answer(router: HaproxyRouter, frontend: str) -> None:
    with pytest.raises(HaproxyError) as info:
        router.set_weight(KEY, "missing", 10)
    assert info.value.command == "set weight be/missing 10"
    assert info.value.answer == "No such server."
    with pytest.raises(ValueError):
        router.set_weight(KEY, "missing", 300)


def _exited(pid: int) -> bool:
    """No such process, or a zombie (PID 1 here may not reap) with every thread dead: the
    leader thread shows Z while the others still exit, holding the process's files and port."""
    states = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):  # a thread gone meanwhile
            states.append(stat.read_text().rsplit(")", 1)[-1].split()[0])
    return all(state in ("Z", "X") for state in states)


def test_stop_kills_the_process(router: HaproxyRouter) -> None:
    port = free_port()
    router.ensure_frontend(KEY, port)
    pid = int(router.pid_path(KEY).read_text())
    router.stop(KEY)
    # stop() returns only once the daemon has exited, not merely been signalled: an exiting
    # process loses its cmdline before it closes its listener, and a frontend started right
    # after on the same port (a lane's freed port reused) must find it free.
    assert _exited(pid)
    assert not router.config_path(KEY).exists()
    assert not router.socket_path(KEY).exists()
    assert not router.is_running(KEY)
    router.stop(KEY)  # stopping a stopped key is fine
    with pytest.raises(HaproxyError, match="ensure_frontend"):
        router.servers(KEY)


def test_stop_frees_the_port_for_a_restart(router: HaproxyRouter) -> None:
    port = free_port()
    for _ in range(5):  # each cycle races stop() against the daemon's exit
        router.ensure_frontend(KEY, port)
        pid = int(router.pid_path(KEY).read_text())
        router.stop(KEY)
        assert _exited(pid)
        with socket.socket() as probe:  # bind as HAProxy does (noreuseport): must be free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
    assert router.ensure_frontend(KEY, port)
    assert router.is_running(KEY)


def test_long_state_dir_uses_short_socket_path(
    tmp_path: Path, backends: dict[str, Backend]
) -> None:
    router = HaproxyRouter(tmp_path / ("deep" * 25) / "state")
    try:
        port = free_port()
        router.ensure_frontend(KEY, port)
        sock = router.socket_path(KEY)
        assert len(os.fsencode(sock)) <= 90
        assert sock.parent.name.startswith("slipway-haproxy-")
        router.add_server(KEY, "a", "127.0.0.1", backends["a"].port)
        assert get(f"http://127.0.0.1:{port}/").text == "a"
    finally:
        _stop_all(router)
    assert not sock.exists()
