"""A private Redis server for tests: Debian's ``redis-server`` on a free loopback port, with
its own temporary directory, no persistence and a random ``requirepass`` (so the tests go
through the credential path), stopped by its pid when done. The machine's own Redis (if one
runs) is never touched: nothing here uses its port, socket or files.

``RedisServer`` is a context manager; ``redis_server`` is the session's, as a fixture
(tests/conftest.py exposes it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

REDIS_BIN = "redis-server"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # another process may take the free port before redis binds it


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class RedisServer:
    """One redis-server process of a test session; ``url`` has no credentials,
    ``password`` is passed separately (as Slipway gets it)."""

    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    port: int = 0
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="slipway-redis-")))
    pid: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    def client(self, **options: object) -> redis.Redis:
        """A redis-py client with the password, answers decoded to str by default."""
        options.setdefault("decode_responses", True)
        return redis.Redis.from_url(self.url, password=self.password, **options)

    def start(self) -> RedisServer:
        binary = shutil.which(REDIS_BIN)
        if binary is None:
            # Not a skip: the bootstrap installs it, and a silently skipped suite proves nothing.
            pytest.fail(f"{REDIS_BIN} not found: run scripts/bootstrap.sh (Debian redis-server)")
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            if self._start_once(binary):
                return self
        raise RuntimeError(f"redis-server did not start in {START_ATTEMPTS} attempts: "
                           f"{self._log_tail()}")

    def _start_once(self, binary: str) -> bool:
        config = self.root / "redis.conf"
        # The password goes in a 0600 file, not on the command line (`ps` shows that).
        config.touch(mode=0o600)
        config.write_text("\n".join([
            "bind 127.0.0.1", f"port {self.port}", "protected-mode yes", "daemonize no",
            f"dir {self.root}", f"logfile {self.log}", 'save ""', "appendonly no",
            f"requirepass {self.password}", "databases 16", ""]))
        self._process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        self.pid = self._process.pid
        deadline = time.monotonic() + START_TIMEOUT
        with self.client(socket_connect_timeout=1, socket_timeout=1) as probe:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:  # e.g. the port was taken meanwhile
                    return False
                with contextlib.suppress(redis.exceptions.ConnectionError):
                    if probe.ping():
                        return True
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.url} in {START_TIMEOUT}s: "
                           f"{self._log_tail()}")

    def stop(self) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL) and remove its directory."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT)
        shutil.rmtree(self.root, ignore_errors=True)

    def _log_tail(self) -> str:
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis; tests keep apart by using topics of their own."""
    with RedisServer() as server:
        yield server
