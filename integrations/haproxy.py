"""Embedded `TrafficRouter`: one HAProxy process per environment, driven over its runtime API.

Each environment key (for example ``shop-prod-local``) gets its own HAProxy daemon with one
frontend and one backend ``be`` that starts without servers. Instances are added, weighted,
drained and removed through the admin socket (HAProxy 2.6 dynamic servers), so neither adding
an environment nor changing its instances ever needs a reload.

Files live in ``state_dir/haproxy/<key>.cfg|.sock|.pid|.log`` (plus ``<key>.lock``). When the
socket path would exceed the unix socket limit, the socket goes to a short private directory
under ``/tmp`` and its path is recorded in ``<key>.sockpath``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

BACKEND = "be"
FRONTEND = "fe"

# sun_path holds 108 bytes with the NUL; HAProxy binds to "<path>.<pid>.tmp" first and renames,
# so the usable length is ~95 bytes (pid up to 7 digits). Keep a margin.
_MAX_SOCKET_PATH = 90
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_MAX_WEIGHT = 256

# `show servers state` srv_admin_state bits (HAProxy include/haproxy/server-t.h).
_ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced/inherited/config/resolution/hostname
_ADMIN_DRAIN_BITS = 0x08 | 0x10  # forced/inherited drain
_OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class HaproxyError(RuntimeError):
    """HAProxy refused a runtime command, or its process could not be started or reached."""

    def __init__(self, message: str, command: str | None = None, answer: str | None = None):
        self.command = command
        self.answer = answer
        detail = message
        if command is not None:
            detail += f" (command: {command!r}"
            detail += f", answer: {answer!r})" if answer is not None else ")"
        super().__init__(detail)


class LbServer(BaseModel):
    """One server of an environment's backend, as HAProxy reports it right now."""

    name: str
    address: str
    port: int
    weight: int
    admin_state: str  # "ready" | "drain" | "maint"
    operational_state: str  # "running" | "stopped" | "starting" | "stopping"
    status: str  # HAProxy's own `show stat` status, e.g. "UP", "DRAIN", "MAINT", "DOWN"
    draining: bool
    current_sessions: int
    queued: int = 0


class HaproxyRouter:
    """Manage one HAProxy daemon per environment key and its servers over the admin socket."""

    def __init__(
        self,
        state_dir: Path,
        haproxy_bin: str = "haproxy",
        bind_address: str = "127.0.0.1",
        command_timeout: float = 5.0,
        start_timeout: float = 10.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.haproxy_bin = haproxy_bin
        self.bind_address = bind_address
        self.command_timeout = command_timeout
        self.start_timeout = start_timeout
        self.dir = self.state_dir / "haproxy"

    # ------------------------------------------------------------------ paths

    def _check_key(self, key: str) -> None:
        if not _NAME_RE.match(key):
            raise ValueError(f"invalid HAProxy environment key {key!r}: use [A-Za-z0-9._-]")

    def config_path(self, key: str) -> Path:
        return self.dir / f"{key}.cfg"

    def pid_path(self, key: str) -> Path:
        return self.dir / f"{key}.pid"

    def log_path(self, key: str) -> Path:
        return self.dir / f"{key}.log"

    def _sockpath_record(self, key: str) -> Path:
        return self.dir / f"{key}.sockpath"

    def socket_path(self, key: str) -> Path:
        """The admin socket for ``key``; a short /tmp path when the natural one is too long."""
        record = self._sockpath_record(key)
        if record.exists():
            return Path(record.read_text().strip())
        natural = self.dir / f"{key}.sock"
        if len(os.fsencode(natural)) <= _MAX_SOCKET_PATH:
            return natural
        digest = hashlib.sha256(os.fsencode(self.dir.resolve())).hexdigest()[:12]
        short_dir = Path("/tmp") / f"slipway-haproxy-{digest}"
        candidate = short_dir / f"{key}.sock"
        if len(os.fsencode(candidate)) > _MAX_SOCKET_PATH:
            candidate = short_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"
        return candidate

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        # Activities run in threads and may be retried concurrently: serialise per key.
        self._check_key(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{key}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---------------------------------------------------------------- process

    def _read_pid(self, key: str) -> int | None:
        try:
            return int(self.pid_path(key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _pid_alive(self, key: str, pid: int) -> bool:
        """True when ``pid`` is a live (not zombie) HAProxy running this key's config."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        # A daemon reparented to a PID 1 that doesn't reap stays as a zombie: that is dead.
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        # Guard against pid reuse: it must be *our* config.
        return os.fsencode(self.config_path(key)) in cmdline

    def _running_pid(self, key: str) -> int | None:
        pid = self._read_pid(key)
        return pid if pid is not None and self._pid_alive(key, pid) else None

    def is_running(self, key: str) -> bool:
        """True when the process for ``key`` is alive and its admin socket answers."""
        self._check_key(key)
        if self._running_pid(key) is None:
            return False
        try:
            self._send(key, "show info")
        except HaproxyError:
            return False
        return True

    def _render_config(self, key: str, bind_port: int, health_path: str | None) -> str:
        check = f"    option httpchk GET {health_path}\n" if health_path else ""
        return (
            f"# Managed by Slipway for environment {key}; servers are added at runtime.\n"
            "global\n"
            f"    stats socket {self.socket_path(key)} mode 600 level admin\n"
            "    stats timeout 30s\n"
            f"    pidfile {self.pid_path(key)}\n"
            "    maxconn 4096\n"
            # Without this, HAProxy sets SO_REUSEPORT and a second process would silently share
            # a port that is already taken instead of failing.
            "    noreuseport\n"
            "\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 30s\n"
            "    timeout server 30s\n"
            "    timeout http-request 10s\n"
            "    timeout http-keep-alive 5s\n"
            "    timeout queue 10s\n"
            "    timeout check 2s\n"
            "    option redispatch\n"
            "    retries 3\n"
            # One server connection per request: clients may keep alive, yet every request is
            # balanced anew, a drained server's session count falls to 0 as soon as its in-flight
            # requests end, and no idle pooled connection blocks `del server`.
            "    option http-server-close\n"
            "\n"
            f"frontend {FRONTEND}\n"
            f"    bind {self.bind_address}:{bind_port}\n"
            f"    default_backend {BACKEND}\n"
            "\n"
            f"backend {BACKEND}\n"
            "    balance roundrobin\n"
            f"{check}"
        )

    def _configured_port(self, key: str) -> int | None:
        try:
            text = self.config_path(key).read_text()
        except OSError:
            return None
        match = re.search(r"^\s*bind\s+\S*:(\d+)\s*$", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _uses_health_checks(self, key: str) -> bool:
        try:
            return "option httpchk" in self.config_path(key).read_text()
        except OSError:
            return False

    def ensure_frontend(
        self, key: str, bind_port: int, health_path: str | None = "/healthz"
    ) -> None:
        """Make sure HAProxy for ``key`` runs and listens on ``bind_port``; idempotent.

        ``health_path`` makes HAProxy GET it on every server each second; a server failing
        three checks in a row (not 2xx/3xx) gets no traffic until it passes two. ``None``
        disables health checks.
        """
        self._check_key(key)
        if not 0 < bind_port < 65536:
            raise ValueError(f"invalid port {bind_port}")
        if health_path is not None and not re.match(r"^/[^\s]*$", health_path):
            raise ValueError(f"invalid health path {health_path!r}: an absolute path, no spaces")
        with self._lock(key):
            if self.is_running(key):
                running_port = self._configured_port(key)
                if running_port != bind_port:
                    raise HaproxyError(
                        f"HAProxy for {key} already listens on port {running_port}, not "
                        f"{bind_port}; stop it first to move it"
                    )
                return
            # Alive but deaf (or stale files): replace it. Servers were runtime-only anyway.
            self._kill(key)
            self._start(key, bind_port, health_path)

    def _start(self, key: str, bind_port: int, health_path: str | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.socket_path(key)
        if sock.parent != self.dir:
            sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._sockpath_record(key).write_text(f"{sock}\n")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.pid_path(key).unlink(missing_ok=True)
        cfg = self.config_path(key)
        tmp = cfg.with_suffix(".cfg.tmp")
        tmp.write_text(self._render_config(key, bind_port, health_path))
        tmp.replace(cfg)

        log = self.log_path(key)
        with open(log, "wb") as out:
            try:
                # -D: the parent reports config/bind errors on stderr and exits non-zero, or
                # forks the daemon (which closes its std fds) and exits 0.
                proc = subprocess.run(
                    [self.haproxy_bin, "-D", "-f", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout,
                    check=False,
                )
            except FileNotFoundError as exc:
                raise HaproxyError(f"HAProxy binary not found: {self.haproxy_bin}") from exc
            except subprocess.TimeoutExpired as exc:
                raise HaproxyError(f"HAProxy for {key} did not start in time") from exc
        if proc.returncode != 0:
            raise HaproxyError(
                f"HAProxy for {key} failed to start on {self.bind_address}:{bind_port} "
                f"(exit {proc.returncode}): {self._log_tail(key)}"
            )

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.is_running(key):
                return
            time.sleep(0.05)
        self._kill(key)
        raise HaproxyError(
            f"HAProxy for {key} started but its admin socket {sock} never answered: "
            f"{self._log_tail(key)}"
        )

    def _log_tail(self, key: str, limit: int = 2000) -> str:
        try:
            text = self.log_path(key).read_text(errors="replace").strip()
        except OSError:
            return "(no output)"
        return text[-limit:] or "(no output)"

    def _kill(self, key: str, timeout: float = 5.0) -> None:
        pid = self._running_pid(key)
        if pid is None:
            return
        # SIGTERM is HAProxy's hard stop: listeners and connections close at once.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pid_alive(key, pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._pid_alive(key, pid):
            time.sleep(0.05)
        if self._pid_alive(key, pid):
            raise HaproxyError(f"HAProxy for {key} (pid {pid}) did not exit")

    def stop(self, key: str) -> None:
        """Kill the HAProxy for ``key`` and remove its files; a stopped key is fine."""
        self._check_key(key)
        with self._lock(key):
            self._kill(key)
            sock = self.socket_path(key)
            with contextlib.suppress(FileNotFoundError):
                sock.unlink()
            if sock.parent != self.dir:
                # The short /tmp directory is shared by this state dir's keys: remove when empty.
                with contextlib.suppress(OSError):
                    sock.parent.rmdir()
            for path in (
                self.config_path(key),
                self.pid_path(key),
                self.log_path(key),
                self._sockpath_record(key),
                self.config_path(key).with_suffix(".cfg.tmp"),
            ):
                path.unlink(missing_ok=True)

    # ------------------------------------------------------------ runtime API

    def _send(self, key: str, command: str) -> str:
        """Send one command over the admin socket and return HAProxy's full answer."""
        sock_path = self.socket_path(key)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.command_timeout)
                conn.connect(os.fspath(sock_path))
                conn.sendall(command.encode() + b"\n")
                chunks = []
                # Non-interactive mode: HAProxy closes the connection after the answer.
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise HaproxyError(
                f"HAProxy for {key} is not reachable at {sock_path} ({exc}); "
                "call ensure_frontend first",
                command,
            ) from exc
        return b"".join(chunks).decode(errors="replace")

    def _command(self, key: str, command: str, ok: tuple[str, ...] = ("",)) -> str:
        """Run ``command``; its stripped answer must start with one of ``ok`` ("" = silent)."""
        answer = self._send(key, command).strip()
        if any(answer == "" if prefix == "" else answer.startswith(prefix) for prefix in ok):
            return answer
        raise HaproxyError(f"HAProxy for {key} refused a command", command, answer)

    def servers(self, key: str) -> list[LbServer]:
        """The backend's servers with address, weight, states and current sessions."""
        self._check_key(key)
        state = self._command(key, f"show servers state {BACKEND}", ok=("1\n", "1"))
        stats = self._command(key, "show stat -1 4 -1", ok=("# pxname",))
        by_name = _parse_stat(stats)
        result = []
        for row in _parse_servers_state(state):
            name = row["srv_name"]
            admin = int(row["srv_admin_state"])
            draining = bool(admin & _ADMIN_DRAIN_BITS)
            if admin & _ADMIN_MAINT_BITS:
                admin_state = "maint"
            elif draining:
                admin_state = "drain"
            else:
                admin_state = "ready"
            stat = by_name.get(name, {})
            result.append(
                LbServer(
                    name=name,
                    address=row["srv_addr"],
                    port=int(row["srv_port"]),
                    weight=int(row["srv_uweight"]),
                    admin_state=admin_state,
                    operational_state=_OP_STATES.get(int(row["srv_op_state"]), "unknown"),
                    status=stat.get("status", ""),
                    draining=draining,
                    current_sessions=int(stat.get("scur") or 0),
                    queued=int(stat.get("qcur") or 0),
                )
            )
        return result

    def _server(self, key: str, name: str) -> LbServer | None:
        return next((s for s in self.servers(key) if s.name == name), None)

    def add_server(self, key: str, name: str, address: str, port: int, weight: int = 100) -> None:
        """Ensure server ``name`` at address:port takes traffic with ``weight``; idempotent.

        An existing server of that name with another address or port is replaced.
        """
        _check_server(name)
        _check_weight(weight)
        with self._lock(key):
            current = self._server(key, name)
            if current is not None and (current.address, current.port) != (address, port):
                self._delete(key, name, timeout=self.start_timeout)
                current = None
            if current is None:
                options = f" weight {weight}"
                health = self._uses_health_checks(key)
                if health:
                    options += " check inter 1s fall 3 rise 2"
                self._command(
                    key,
                    f"add server {BACKEND}/{name} {address}:{port}{options}",
                    ok=("New server registered",),
                )
                if health:
                    # Dynamic servers start with checks disabled even when declared.
                    self._command(key, f"enable health {BACKEND}/{name}")
            else:
                self._command(key, f"set weight {BACKEND}/{name} {weight}")
                # Converge: a re-added server is meant to take traffic, even if drained before.
                self._command(key, f"set server {BACKEND}/{name} state ready")
            # Dynamic servers are created in maintenance mode.
            self._command(key, f"enable server {BACKEND}/{name}")

    def set_weight(self, key: str, name: str, weight: int) -> None:
        """Set the user weight (0–256); 0 stops new traffic without draining."""
        _check_server(name)
        _check_weight(weight)
        self._command(key, f"set weight {BACKEND}/{name} {weight}")

    def drain(self, key: str, name: str) -> None:
        """Stop sending new requests to ``name``; requests in flight complete."""
        _check_server(name)
        self._command(key, f"set server {BACKEND}/{name} state drain")

    def wait_idle(self, key: str, name: str, timeout: float, poll: float = 0.2) -> bool:
        """Wait until ``name`` has no current or queued sessions; False on timeout.

        An absent server has nothing in flight, so it counts as idle.
        """
        _check_server(name)
        deadline = time.monotonic() + timeout
        while True:
            server = self._server(key, name)
            if server is None or server.current_sessions + server.queued == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def remove_server(self, key: str, name: str, timeout: float = 10.0) -> None:
        """Disable and delete ``name``; an absent server is fine (idempotent).

        HAProxy refuses to delete a server that still has connections: drain and
        `wait_idle` first; this waits at most ``timeout`` seconds for them to end.
        """
        _check_server(name)
        with self._lock(key):
            self._delete(key, name, timeout)

    def _delete(self, key: str, name: str, timeout: float) -> None:
        disabled = self._send(key, f"disable server {BACKEND}/{name}").strip()
        if disabled == "No such server.":
            return
        if disabled:
            raise HaproxyError(
                f"HAProxy for {key} refused a command", f"disable server {BACKEND}/{name}", disabled
            )
        command = f"del server {BACKEND}/{name}"
        deadline = time.monotonic() + timeout
        while True:
            answer = self._send(key, command).strip()
            if answer.startswith("Server deleted") or answer == "No such server.":
                return
            # "still has connections attached" is transient: in-flight requests are ending.
            if "connection" not in answer.lower() or time.monotonic() >= deadline:
                raise HaproxyError(f"HAProxy for {key} refused a command", command, answer)
            time.sleep(0.1)


def _check_server(name: str) -> None:
    if not _SERVER_NAME_RE.match(name):
        raise ValueError(f"invalid server name {name!r}: use [A-Za-z0-9._:-]")


def _check_weight(weight: int) -> None:
    if not 0 <= weight <= _MAX_WEIGHT:
        raise ValueError(f"weight must be between 0 and {_MAX_WEIGHT}, got {weight}")


def _parse_servers_state(answer: str) -> list[dict[str, str]]:
    """Parse `show servers state` (format version 1: a version line, a `#` header, rows)."""
    lines = [line for line in answer.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("#")), None)
    if header is None:
        return []
    columns = header.lstrip("# ").split()
    rows = []
    for line in lines[lines.index(header) + 1 :]:
        values = line.split()
        if len(values) >= len(columns):
            rows.append(dict(zip(columns, values, strict=False)))
    return rows


def _parse_stat(answer: str) -> dict[str, dict[str, str]]:
    """Parse `show stat` CSV into {server name: {column: value}} for our backend."""
    lines = [line for line in answer.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    columns = lines[0][2:].split(",")
    result = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND"):
            result[row["svname"]] = row
    return result
