"""One HAProxy daemon per environment key: its files, its config, starting and stopping it.

Files live in ``state_dir/haproxy/<key>.cfg|.sock|.pid|.log`` (plus ``<key>.lock`` and the
recorded servers ``<key>.servers.json``). When the socket path would exceed the unix socket
limit, the socket goes to a short private directory under ``/tmp`` and its path is recorded in
``<key>.sockpath``.

The config carries the backend's servers as they were last recorded (``intent``): a daemon
started from it (killed and restarted, the host rebooted, started by hand) serves from its
first accepted connection, with no empty-backend window. The running daemon never re-reads
it: servers change over the runtime API, and the config is rewritten beside each change.

One process per environment, not two sharing the port with ``SO_REUSEPORT``: see
:meth:`HaproxyProcesses.render_config`.
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
from collections.abc import Iterator, Mapping
from pathlib import Path

from integrations.haproxy.common import (
    _MAX_SOCKET_PATH,
    _NAME_RE,
    BACKEND,
    FRONTEND,
    METRICS_PATH,
    HaproxyError,
    _check_address,
    _check_server,
    _check_weight,
)
from integrations.haproxy.intent import ServerIntent, read_intent, write_intent
from schemas.http import check_health_path

# What every server of a backend with health checks gets, in the config and at runtime.
HEALTH_CHECK_OPTIONS = "check inter 1s fall 3 rise 2"


class HaproxyProcesses:
    """Start, find and stop the HAProxy daemon of each environment key."""

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
        if not _NAME_RE.fullmatch(key):
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

    @staticmethod
    def _start_time(pid: int) -> str | None:
        """When process ``pid`` started (field 22 of /proc/<pid>/stat); None when it has
        exited: no such process, or a zombie whose threads are all dead too. (A leader thread
        shows Z while the other threads still exit, holding the files and ports they share.)"""
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return None
        for task in tasks:
            try:
                state = (task / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue  # that thread is gone
            if state not in ("Z", "X"):
                return fields[19]  # fields[0] is field 3 (state): starttime is fields[19]
        return None

    def _running_pid(self, key: str) -> int | None:
        pid = self._read_pid(key)
        return pid if pid is not None and self._pid_alive(key, pid) else None

    def running_pid(self, key: str) -> int | None:
        """The pid of ``key``'s live daemon (never a pid reused by another process)."""
        self._check_key(key)
        return self._running_pid(key)

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

    def render_config(self, key: str, bind_port: int, health_path: str | None,
                      servers: Mapping[str, ServerIntent] | None = None) -> str:
        """The daemon's config: frontend on ``bind_port``, backend ``be`` with ``servers``.

        A server recorded as draining is written with weight 0: HAProxy has no drain keyword
        in its config, and for a fresh process (nothing in flight) weight 0 is what drain
        means, no new requests; the reconciler then sets its drain state and recorded
        weight over the runtime API. Health-checked servers start UP (HAProxy's default),
        so the first connection already has servers; one whose replica is gone fails its
        checks within 3 s and, meanwhile, `option redispatch` retries elsewhere.

        Why not two daemons per environment on one port (``SO_REUSEPORT``), so that a kill
        would lose only the connections one of them held: (1) ``noreuseport`` below is what
        makes a port already taken (another stack's environment, a test beside the demo)
        fail at bind instead of silently splitting that port's traffic between two
        environments; (2) every runtime change would have to reach both daemons, and one
        of them failing half-way leaves them disagreeing, with no transaction across two
        admin sockets; (3) ``wait_idle``, ``show stat`` figures (canary analysis) and the
        Prometheus exporter on the shared port would each see one daemon's half at random.
        A kill -9 costs the connections in flight plus the refusals until the reconciler
        restarts the daemon; with its servers in this config, nothing more.
        """
        check = f"    option httpchk GET {health_path}\n" if health_path else ""
        lines = []
        for name, entry in sorted((servers or {}).items()):
            _check_server(name)
            _check_address(entry.address)
            _check_weight(entry.weight)
            if not 0 < entry.port < 65536:
                raise ValueError(f"invalid port {entry.port} for server {name}")
            draining = entry.state == "drain"
            line = (f"    server {name} {entry.address}:{entry.port} "
                    f"weight {0 if draining else entry.weight}")
            if health_path:
                line += f" {HEALTH_CHECK_OPTIONS}"
            if draining:
                line += f"  # draining (recorded weight {entry.weight})"
            lines.append(line + "\n")
        return (
            f"# Managed by Slipway for environment {key}: servers as recorded in "
            f"{self.intent_path(key).name},\n"
            "# changed at runtime over the admin socket; this file is what a restart starts "
            "from.\n"
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
            # HAProxy's own Prometheus exporter, for a Prometheus on this host to scrape
            # (canary analysis): answered by HAProxy, never forwarded, loopback clients only.
            f"    http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }} "
            "{ src 127.0.0.0/8 ::1 }\n"
            f"    default_backend {BACKEND}\n"
            "\n"
            f"backend {BACKEND}\n"
            "    balance roundrobin\n"
            f"{check}"
            + "".join(lines)
        )

    def _configured_port(self, key: str) -> int | None:
        try:
            text = self.config_path(key).read_text()
        except OSError:
            return None
        match = re.search(r"^\s*bind\s+\S*:(\d+)\s*$", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def frontend_port(self, key: str) -> int | None:
        """The port ``key``'s frontend is configured to listen on (None: no frontend)."""
        return self._configured_port(key)

    def _health_path(self, key: str) -> str | None:
        try:
            text = self.config_path(key).read_text()
        except OSError:
            return None
        match = re.search(r"^\s*option httpchk GET (\S+)\s*$", text, re.MULTILINE)
        return match.group(1) if match else None

    def intent_path(self, key: str) -> Path:
        return self.dir / f"{key}.servers.json"

    def intended(self, key: str) -> dict[str, ServerIntent]:
        """The servers the backend should hold, as the router last set them."""
        return read_intent(self.intent_path(key))

    def _write_config(self, key: str, bind_port: int, health_path: str | None,
                      servers: Mapping[str, ServerIntent]) -> None:
        """Replace the config atomically (a crash mid-write leaves the previous one)."""
        cfg = self.config_path(key)
        tmp = cfg.with_suffix(".cfg.tmp")
        tmp.write_text(self.render_config(key, bind_port, health_path, servers))
        tmp.replace(cfg)

    def sync_config(self, key: str) -> bool:
        """Rewrite ``key``'s config from its recorded servers when it differs; True when it
        did. Never touches the running daemon (it does not re-read its config); a key
        without a config (stopped on purpose) stays without one."""
        with self._lock(key):
            return self._sync_config(key)

    def _sync_config(self, key: str) -> bool:
        """`sync_config` with the key's lock held."""
        port = self._configured_port(key)
        if port is None:
            return False
        wanted = self.render_config(key, port, self._health_path(key), self.intended(key))
        try:
            if self.config_path(key).read_text() == wanted:
                return False
        except OSError:
            return False
        self._write_config(key, port, self._health_path(key), self.intended(key))
        return True

    def known_keys(self) -> list[str]:
        """Keys with a config: every environment whose HAProxy should be running."""
        return sorted(cfg.stem for cfg in self.dir.glob("*.cfg")) if self.dir.is_dir() else []

    def _uses_health_checks(self, key: str) -> bool:
        try:
            return "option httpchk" in self.config_path(key).read_text()
        except OSError:
            return False

    def ensure_frontend(
        self, key: str, bind_port: int, health_path: str | None = "/healthz"
    ) -> bool:
        """Make sure HAProxy for ``key`` runs and listens on ``bind_port``; idempotent.
        True when it had to be started.

        ``health_path`` makes HAProxy GET it on every server each second; a server failing
        three checks in a row (not 2xx/3xx) gets no traffic until it passes two. ``None``
        disables health checks.
        """
        self._check_key(key)
        if not 0 < bind_port < 65536:
            raise ValueError(f"invalid port {bind_port}")
        if health_path is not None:
            # It is written into the config, where a space, quote or '#' would change it.
            check_health_path(health_path)
        with self._lock(key):
            if self.is_running(key):
                running_port = self._configured_port(key)
                if running_port != bind_port:
                    raise HaproxyError(
                        f"HAProxy for {key} already listens on port {running_port}, not "
                        f"{bind_port}; stop it first to move it"
                    )
                return False
            # Dead, or alive but deaf (stale files): replace it, with the servers it held in its
            # config, so traffic keeps its split instead of a new canary taking all.
            self._kill(key)
            self._start(key, bind_port, health_path, self.intended(key))
            return True

    def restart_if_dead(self, key: str,
                        live: Mapping[str, tuple[str, int]] | None = None) -> bool:
        """Start the daemon of a known key again, its recorded servers in its config; True
        when it was dead. A running daemon is never touched (adopted as it is).

        ``live`` maps server names to where their replicas answer now: a recorded server
        that moved is recorded and started at its new address, one absent from ``live``
        (its replica is not running) is left out of the config until it runs again. None:
        every recorded server as recorded (the engine could not be asked).
        """
        with self._lock(key):
            if self.is_running(key):
                return False
            port = self._configured_port(key)
            if port is None:
                return False  # stopped on purpose (no config) or never started
            servers = self.intended(key)
            if live is not None:
                moved = {name: entry.model_copy(update={"address": live[name][0],
                                                        "port": live[name][1]})
                         for name, entry in servers.items()
                         if name in live and (entry.address, entry.port) != live[name]}
                if moved:
                    servers.update(moved)
                    write_intent(self.intent_path(key), servers)
                servers = {name: entry for name, entry in servers.items() if name in live}
            self._kill(key)
            self._start(key, port, self._health_path(key), servers)
            return True

    def _start(self, key: str, bind_port: int, health_path: str | None,
               servers: Mapping[str, ServerIntent]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        sock = self.socket_path(key)
        if sock.parent != self.dir:
            sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._sockpath_record(key).write_text(f"{sock}\n")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.pid_path(key).unlink(missing_ok=True)
        self._write_config(key, bind_port, health_path, servers)
        cfg = self.config_path(key)

        log = self.log_path(key)
        with open(log, "wb") as out:
            try:
                # -D: the parent reports config/bind errors on stderr and exits non-zero, or
                # forks the daemon (which closes its std fds) and exits 0.
                # Its own session (HAProxy's daemon mode also calls setsid): stopping the
                # process that started it (the worker, by its process group) must never
                # reach the load balancer, which outlives Slipway's processes.
                proc = subprocess.run(
                    [self.haproxy_bin, "-D", "-f", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout,
                    check=False,
                    start_new_session=True,
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
        """Kill ``key``'s daemon and return once it has exited: its port is free again."""
        pid = self._running_pid(key)
        if pid is None:
            return
        started = self._start_time(pid)
        if started is None:
            return  # exited meanwhile

        def exited() -> bool:
            # Not `_pid_alive`: an exiting process loses its cmdline (so no longer looks like
            # ours) before it closes its files, and would still hold the port. Gone means no
            # such process, a zombie, or the pid reused by a process started later.
            return self._start_time(pid) != started

        def wait_exited() -> bool:
            deadline = time.monotonic() + timeout
            while not exited():
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
            return True

        # SIGTERM is HAProxy's hard stop: listeners and connections close at once.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            if wait_exited():
                return
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
                self.intent_path(key),
                self.pid_path(key),
                self.log_path(key),
                self._sockpath_record(key),
                self.config_path(key).with_suffix(".cfg.tmp"),
            ):
                path.unlink(missing_ok=True)

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
