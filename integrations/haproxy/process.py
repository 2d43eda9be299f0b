"""One HAProxy daemon per environment key: its files, its config, starting and stopping it.

Files live in ``state_dir/haproxy/<key>.cfg|.sock|.pid|.log`` (plus ``<key>.lock``, and the
recorded servers ``<key>.servers.json`` when the intent store is the file one). When the
socket path would exceed the unix socket limit, the socket goes to a short private directory
under ``/tmp`` and its path is recorded in ``<key>.sockpath``.

The config carries the backend's servers as they were last recorded (``intent``): a daemon
started from it (killed and restarted, the host rebooted, started by hand) serves from its
first accepted connection, with no empty-backend window. The running daemon never re-reads
it: servers change over the runtime API, and the config is rewritten beside each change.
The record itself is an :class:`~integrations.haproxy.intent.IntentStore`: with the
catalogue's, a host that never ran a key (a replacement load-balancer host) starts it from
the store's frontend and servers.

One process per environment, not two sharing the port with ``SO_REUSEPORT``: see
:meth:`HaproxyProcesses.render_config`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from integrations.haproxy import listeners
from integrations.haproxy.common import _NAME_RE, HaproxyError
from integrations.haproxy.config import (
    HEALTH_CHECK_OPTIONS,
    configured_frontend,
    render_config,
)
from integrations.haproxy.daemon import runs_config, terminate
from integrations.haproxy.intent import FileIntent, FrontendIntent, IntentStore, ServerIntent
from integrations.haproxy.lane_table import map_path, read_table, table_path, write_map
from integrations.haproxy.session import AdminSocket
from schemas.http import check_health_path

__all__ = ["HEALTH_CHECK_OPTIONS", "HaproxyProcesses"]

log = logging.getLogger(__name__)


class HaproxyProcesses(AdminSocket):
    """Start, find and stop the HAProxy daemon of each environment key."""

    def __init__(
        self,
        state_dir: Path,
        haproxy_bin: str = "haproxy",
        bind_address: str = "127.0.0.1",
        command_timeout: float = 5.0,
        start_timeout: float = 10.0,
        intent: IntentStore | None = None,
        hold_listeners: bool = False,
    ) -> None:
        """``intent``: where each key's frontend and servers are recorded (default: a file per
        key in this state directory, :class:`FileIntent`). ``hold_listeners``: this process
        keeps the load balancers; it starts each daemon with a listening socket it keeps
        open, so a daemon's death refuses no connection (integrations/haproxy/listeners.py)."""
        self.hold_listeners = hold_listeners
        self.state_dir = Path(state_dir)
        self.haproxy_bin = haproxy_bin
        self.bind_address = bind_address
        self.command_timeout = command_timeout
        self.start_timeout = start_timeout
        self.dir = self.state_dir / "haproxy"
        self.intent: IntentStore = intent if intent is not None else FileIntent(self.dir)
        # Keys whose local records were looked at for adoption by another store (_adopt).
        self._adopted: set[str] = set()
        # Open runtime-API sessions of this thread, by key (_batch).
        self._local = threading.local()

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

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        # Activities run in threads and may be retried concurrently: serialise per key.
        self._check_key(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{key}.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                self._adopt(key)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _adopt(self, key: str) -> None:
        """A key this host ran before its intent store was another one (the catalogue's, in
        place of the file): its config and ``.servers.json`` are the record, so they go into
        the store before anything reads or rewrites it (else the next config would be written
        with no servers). Once per key and process; a store that cannot be asked is tried
        again at the next lock. Called with the key's lock held."""
        if key in self._adopted or isinstance(self.intent, FileIntent):
            return
        try:
            frontend = self._configured(key)
            if frontend is not None and self.intent.frontend(key) is None:
                local = FileIntent(self.dir).read(key)
                if local and not self.intent.read(key):
                    self.intent.write(key, local)
                self.intent.set_frontend(key, frontend)
                log.info("load balancer %s: its local record adopted by the intent store", key)
        except Exception:  # the store is down: what needs it fails on its own, with its error
            log.warning("load balancer %s: intent store unavailable", key, exc_info=True)
            return
        self._adopted.add(key)

    # ---------------------------------------------------------------- process

    def _read_pid(self, key: str) -> int | None:
        try:
            return int(self.pid_path(key).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _running_pid(self, key: str) -> int | None:
        pid = self._read_pid(key)
        return pid if pid is not None and runs_config(pid, self.config_path(key)) else None

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
        """The daemon's config: frontend on ``bind_port``, backend ``be`` with ``servers``
        (:func:`~integrations.haproxy.config.render_config`).

        Why not two daemons per environment on one port (``SO_REUSEPORT``), so that a kill
        would lose only the connections one of them held: (1) ``noreuseport`` is what
        makes a port already taken (another stack's environment, a test beside the demo)
        fail at bind instead of silently splitting that port's traffic between two
        environments; (2) every runtime change would have to reach both daemons, and one
        of them failing half-way leaves them disagreeing, with no transaction across two
        admin sockets; (3) ``wait_idle``, ``show stat`` figures (canary analysis) and the
        Prometheus exporter on the shared port would each see one daemon's half at random.
        Instead, the keeper holds each daemon's listening socket (``hold_listeners``): a
        kill -9 costs the connections the dead daemon held, and the ones arriving until the
        reconciler starts it again wait in the socket's backlog; with its servers in this
        config, nothing more.
        """
        return render_config(key, bind_address=self.bind_address, bind_port=bind_port,
                             health_path=health_path, servers=servers or {},
                             socket_path=self.socket_path(key), pid_path=self.pid_path(key),
                             lanes=read_table(self.dir, key),
                             lanes_map=map_path(self.dir.absolute(), key))

    def _configured(self, key: str) -> FrontendIntent | None:
        """The frontend ``key``'s config on this host sets (None: no config)."""
        try:
            return configured_frontend(self.config_path(key).read_text())
        except OSError:
            return None

    def _configured_port(self, key: str) -> int | None:
        frontend = self._configured(key)
        return frontend.bind_port if frontend else None

    def frontend_port(self, key: str) -> int | None:
        """The port ``key``'s frontend is configured to listen on (None: no frontend)."""
        return self._configured_port(key)

    def _health_path(self, key: str) -> str | None:
        frontend = self._configured(key)
        return frontend.health_path if frontend else None

    def intent_path(self, key: str) -> Path:
        """Where the file store keeps ``key``'s servers (:class:`FileIntent`)."""
        return FileIntent(self.dir).path(key)

    def intended(self, key: str) -> dict[str, ServerIntent]:
        """The servers the backend should hold, as the router last set them."""
        return self.intent.read(key)

    def _write_config(self, key: str, bind_port: int, health_path: str | None,
                      servers: Mapping[str, ServerIntent]) -> None:
        """Replace the config atomically (a crash mid-write leaves the previous one)."""
        cfg = self.config_path(key)
        tmp = cfg.with_suffix(".cfg.tmp")
        tmp.write_text(self.render_config(key, bind_port, health_path, servers))
        # The config loads the lane map at start: it must exist, and say what the table says.
        write_map(self.dir, key, read_table(self.dir, key))
        tmp.replace(cfg)

    def sync_config(self, key: str) -> bool:
        """Rewrite ``key``'s config from its recorded servers when it differs; True when it
        did. Never touches the running daemon (it does not re-read its config); a key
        without a config (stopped on purpose) stays without one."""
        with self._lock(key):
            return self._sync_config(key)

    def _sync_config(self, key: str,
                     servers: Mapping[str, ServerIntent] | None = None) -> bool:
        """`sync_config` with the key's lock held; ``servers``: the record, when the caller
        has just read or written it."""
        frontend = self._configured(key)
        if frontend is None:
            return False
        servers = self.intended(key) if servers is None else servers
        wanted = self.render_config(key, frontend.bind_port, frontend.health_path, servers)
        try:
            if self.config_path(key).read_text() == wanted:
                return False
        except OSError:
            return False
        self._write_config(key, frontend.bind_port, frontend.health_path, servers)
        return True

    def known_keys(self) -> list[str]:
        """Keys with a config on this host or a record in the intent store: every
        environment whose HAProxy should be running here."""
        return sorted({*self.local_keys(), *self.intent.keys()})

    def local_keys(self) -> list[str]:
        """Keys with a config on this host (what `known_keys` falls back to while the intent
        store cannot be asked)."""
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
                running = self._configured(key)
                if running is None or running.bind_port != bind_port:
                    raise HaproxyError(
                        f"HAProxy for {key} already listens on port "
                        f"{running.bind_port if running else None}, not {bind_port}; stop it "
                        "first to move it"
                    )
                self._remember(key, running)
                return False
            # Dead, or alive but deaf (stale files): replace it, with the servers it held in its
            # config, so traffic keeps its split instead of a new canary taking all.
            self._kill(key)
            self._start(key, bind_port, health_path, self.intended(key))
            self._remember(key, FrontendIntent(bind_port=bind_port, health_path=health_path))
            return True

    def _remember(self, key: str, frontend: FrontendIntent) -> None:
        """Record ``key``'s frontend in the intent store when it says otherwise."""
        if self.intent.frontend(key) != frontend:
            self.intent.set_frontend(key, frontend)

    def restart_if_dead(self, key: str,
                        live: Mapping[str, tuple[str, int]] | None = None) -> bool:
        """Start the daemon of a known key again, its recorded servers in its config; True
        when it was dead. A running daemon is never touched (adopted as it is).

        Where it listens comes from its config on this host, else from the intent store (a
        host that never ran it). ``live`` maps server names to where their replicas answer
        now: a recorded server that moved is recorded and started at its new address, one
        absent from ``live`` (its replica is not running) is left out of the config until it
        runs again. None: every recorded server as recorded (the engine could not be asked,
        or the replicas run on hosts this one cannot see). An intent store that cannot be
        asked does not keep a dead daemon down: it starts from its config as it is.
        """
        with self._lock(key):
            if self.is_running(key):
                return False
            try:
                frontend = self._configured(key) or self.intent.frontend(key)
                servers = self.intended(key) if frontend is not None else {}
            except Exception:
                if self._configured(key) is None:
                    raise
                log.warning("load balancer %s restarts from its config: the intent store "
                            "cannot be asked", key, exc_info=True)
                self._kill(key)
                self._start_configured(key)
                return True
            if frontend is None:
                return False  # stopped on purpose (no config, no record) or never started
            if live is not None:
                moved = {name: entry.model_copy(update={"address": live[name][0],
                                                        "port": live[name][1]})
                         for name, entry in servers.items()
                         if name in live and (entry.address, entry.port) != live[name]}
                if moved:
                    servers.update(moved)
                    self.intent.write(key, servers)
                servers = {name: entry for name, entry in servers.items() if name in live}
            self._kill(key)
            self._start(key, frontend.bind_port, frontend.health_path, servers)
            return True

    def _start(self, key: str, bind_port: int, health_path: str | None,
               servers: Mapping[str, ServerIntent]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_config(key, bind_port, health_path, servers)
        self._start_configured(key, bind_port)

    def _start_configured(self, key: str, bind_port: int | None = None) -> None:
        """Start the daemon from its config as it is on disk."""
        bind_port = bind_port if bind_port is not None else self._configured_port(key)
        sock = self.socket_path(key)
        if sock.parent != self.dir:
            sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._sockpath_record(key).write_text(f"{sock}\n")
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self.pid_path(key).unlink(missing_ok=True)
        cfg = self.config_path(key)

        environment: dict[str, str] | None = None
        passed: tuple[int, ...] = ()
        if self.hold_listeners and bind_port is not None:
            try:
                listener = listeners.hold(self.bind_address, bind_port)
            except OSError as exc:
                raise HaproxyError(f"HAProxy for {key} failed to start on "
                                   f"{self.bind_address}:{bind_port}: {exc}") from exc
            environment = {**os.environ, listeners.LISTEN_VARIABLE: f"fd@{listener.fileno()}"}
            passed = (listener.fileno(),)
        with open(self.log_path(key), "wb") as out:
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
                    env=environment,
                    pass_fds=passed,
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
        if pid is not None and not terminate(pid, timeout):
            raise HaproxyError(f"HAProxy for {key} (pid {pid}) did not exit")

    def stop(self, key: str) -> None:
        """Kill the HAProxy for ``key`` and remove its files and record; a stopped key is
        fine."""
        self._check_key(key)
        with self._lock(key):
            # The record first: a host that fails half-way keeps its config and retries,
            # while a record left behind would bring the daemon back on any host.
            self.intent.forget(key)
            port = self._configured_port(key)
            self._kill(key)
            if port is not None:  # stopped on purpose: the port refuses connections again
                listeners.release(self.bind_address, port)
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
                table_path(self.dir, key),
                map_path(self.dir, key),
            ):
                path.unlink(missing_ok=True)
