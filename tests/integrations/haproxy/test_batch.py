"""The commands of one change go over one admin connection, each answer still checked: the
interactive session on its own (a fake HAProxy), then the router and the traffic adapter
against the real Debian haproxy with loopback backends."""

from __future__ import annotations

import shutil
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from integrations.haproxy.common import HaproxyError
from integrations.haproxy.intent import FileIntent, ServerIntent
from integrations.haproxy.router import HaproxyRouter
from integrations.haproxy.session import RuntimeSession
from integrations.haproxy.traffic import HaproxyTraffic
from schemas.models import DrainInput, Instance, TrafficInput
from tests.integrations.haproxy.test_router import Backend, backends, router
from tests.support.hermetic import lb_port_start

__all__ = ["backends", "router"]  # fixtures shared with the router tests

KEY = "shop-prod-local"
haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy")


def test_a_session_reads_each_answer_up_to_its_prompt() -> None:
    ours, theirs = socket.socketpair()
    received: list[bytes] = []

    def fake_haproxy() -> None:
        # The prompt, then answers cut anywhere: a prompt split across two writes, two
        # answers in one.
        buffer = b""
        while b"\n" not in buffer:
            buffer += theirs.recv(100)
        received.append(buffer)
        theirs.sendall(b"\n")
        theirs.sendall(b"> ")
        for chunk in (b"New server registered.\n\n> \n", b"> No such ", b"server.\n\n> "):
            theirs.sendall(chunk)
        while b"quit" not in b"".join(received):
            received.append(theirs.recv(100))
        theirs.close()

    thread = threading.Thread(target=fake_haproxy)
    thread.start()
    session = RuntimeSession(ours)
    assert session.send("add server be/a 127.0.0.1:1").strip() == "New server registered."
    assert session.send("enable server be/a") == "\n"
    assert session.send("set weight be/zz 1").strip() == "No such server."
    session.close()
    thread.join(5)
    sent = b"".join(received)
    assert sent.startswith(b"prompt\n") and sent.endswith(b"quit\n")
    assert b"add server be/a 127.0.0.1:1\nenable server be/a\nset weight be/zz 1\n" in sent


def test_a_session_cut_short_refuses_the_rest_of_its_batch() -> None:
    ours, theirs = socket.socketpair()
    theirs.sendall(b"\n> New server")  # the prompt, then half an answer and HAProxy gone
    session = RuntimeSession(ours)
    theirs.close()
    with pytest.raises(OSError):  # a broken pipe, or the answer never ending
        session.send("add server be/a 127.0.0.1:1")
    # What the lost answer's rest would be must never be read as the next command's answer.
    with pytest.raises(ConnectionResetError, match="earlier in this batch"):
        session.send("enable server be/a")
    session.close()


class CountingIntent(FileIntent):
    """The file store, counting its writes."""

    writes = 0

    def write(self, key: str, servers: Mapping[str, ServerIntent]) -> None:
        self.writes += 1
        super().write(key, servers)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Admin connections (``connections``) and commands (each command) of every router."""
    seen: Counter[str] = Counter()
    connect, send = HaproxyRouter._connect, HaproxyRouter._send

    def counted_connect(self: HaproxyRouter, key: str) -> socket.socket:
        seen["connections"] += 1
        return connect(self, key)

    def counted_send(self: HaproxyRouter, key: str, command: str) -> str:
        seen[command] += 1
        seen["commands"] += 1
        return send(self, key, command)

    monkeypatch.setattr(HaproxyRouter, "_connect", counted_connect)
    monkeypatch.setattr(HaproxyRouter, "_send", counted_send)
    return seen


@pytest.fixture
def frontend(router: HaproxyRouter) -> Iterator[str]:
    port = lb_port_start(span=1)
    router.ensure_frontend(KEY, port, health_path=None)
    yield f"http://127.0.0.1:{port}/"


@haproxy
@pytest.mark.integration
def test_servers_added_together_share_one_connection_and_one_record(
        tmp_path: Path, backends: dict[str, Backend], connections: Counter[str]) -> None:
    counting = CountingIntent(tmp_path / "state" / "haproxy")
    router = HaproxyRouter(tmp_path / "state", intent=counting)
    port = lb_port_start(span=1)
    try:
        router.ensure_frontend(KEY, port, health_path=None)
        connections.clear()
        router.add_servers(KEY, {name: ("127.0.0.1", backend.port)
                                 for name, backend in backends.items()}, weight=50)
        # One look at the backend, then add + enable per server, all on one connection.
        assert connections["connections"] == 1
        assert connections["commands"] == 1 + 2 * len(backends)
        assert counting.writes == 1
        assert {s.name: (s.weight, s.admin_state) for s in router.servers(KEY)} == {
            name: (50, "ready") for name in backends}
        with httpx.Client(timeout=5) as client:
            answers = {client.get(f"http://127.0.0.1:{port}/").text for _ in range(30)}
        assert answers == set(backends)

        # Again: in rotation as asked already, so one look and nothing else.
        connections.clear()
        router.add_servers(KEY, {name: ("127.0.0.1", backend.port)
                                 for name, backend in backends.items()}, weight=50)
        assert (connections["connections"], connections["commands"]) == (1, 1)
        assert counting.writes == 1

        # A drained server asked back, another at a new weight: both converge.
        router.drain(KEY, "a")
        connections.clear()
        router.add_servers(KEY, {"a": ("127.0.0.1", backends["a"].port),
                                 "b": ("127.0.0.1", backends["b"].port)}, weight=70)
        assert connections["connections"] == 1
        assert connections["set server be/a state ready"] == 1
        assert {s.name: (s.weight, s.admin_state) for s in router.servers(KEY)} == {
            "a": (70, "ready"), "b": (70, "ready"), "c": (50, "ready")}
    finally:
        router.stop(KEY)


@haproxy
@pytest.mark.integration
def test_a_refused_command_stops_the_batch_and_records_what_was_done(
        router: HaproxyRouter, frontend: str, backends: dict[str, Backend]) -> None:
    router.add_servers(KEY, {"a": ("127.0.0.1", backends["a"].port),
                             "b": ("127.0.0.1", backends["b"].port)})
    with pytest.raises(HaproxyError) as refused:
        router.set_weights(KEY, {"a": 10, "missing": 5, "b": 20})
    assert (refused.value.command, refused.value.answer) == ("set weight be/missing 5",
                                                             "No such server.")
    # a's weight went through and is recorded; b's was never sent.
    assert {s.name: s.weight for s in router.servers(KEY)} == {"a": 10, "b": 100}
    assert {name: e.weight for name, e in router.intended(KEY).items()} == {"a": 10, "b": 100}


@haproxy
@pytest.mark.integration
def test_a_step_of_traffic_changes_opens_a_connection_per_phase(
        router: HaproxyRouter, frontend: str, backends: dict[str, Backend],
        connections: Counter[str]) -> None:
    traffic = HaproxyTraffic(router)
    instances = [Instance(name=f"v1-{index}", version=1, address="127.0.0.1", port=backend.port)
                 for index, backend in enumerate(backends.values())]
    traffic.add(TrafficInput(env_key=KEY, instances=instances))
    assert connections["connections"] == 1
    assert [s.name for s in router.servers(KEY)] == ["v1-0", "v1-1", "v1-2"]

    connections.clear()
    progress: list[str] = []
    traffic.drain(DrainInput(env_key=KEY, version=1, keep=1, timeout_seconds=10),
                  progress=progress.append)
    # The names, the drains, one look (all idle), the deletes: four connections for two
    # servers, where each command had one.
    assert connections["connections"] == 4
    assert connections["set server be/v1-1 state drain"] == 1
    assert connections["del server be/v1-2"] == 1
    assert sorted(progress) == ["drained v1-1", "drained v1-2"]
    assert [s.name for s in router.servers(KEY)] == ["v1-0"]
    assert list(router.intended(KEY)) == ["v1-0"]
    assert {httpx.get(frontend, timeout=5).text for _ in range(5)} == {"a"}
