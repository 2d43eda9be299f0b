"""A private PostgreSQL server for a test: Debian's binaries, a cluster in a temporary
directory owned by the ``postgres`` user, listening on a free loopback port only, stopped
(and its files removed) when the block ends. Nothing of the machine's own PostgreSQL (if
any runs) is touched."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT = 60.0


def _bin_dir() -> Path | None:
    root = Path("/usr/lib/postgresql")
    versions = sorted((path for path in root.glob("*/bin") if (path / "initdb").exists()),
                      key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *command], check=check,
                          capture_output=True, text=True, timeout=120)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh database ``slipway`` with its own user; yields its SQLAlchemy URL."""
    binaries = _bin_dir()
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        binaries = None
    if binaries is None:
        pytest.skip("PostgreSQL is not installed (scripts/bootstrap.sh installs `postgresql`)")
    root = Path(tempfile.mkdtemp(prefix="slipway-pg-"))
    os.chmod(root, 0o755)
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    shutil.chown(root, "postgres", "postgres")
    shutil.chown(sockets, "postgres", "postgres")
    port = _free_port()
    password = secrets.token_urlsafe(16)
    log = root / "server.log"
    try:
        _as_postgres(str(binaries / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "-E", "UTF8", "--no-sync")
        _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t",
                     str(int(START_TIMEOUT)), "-o",
                     f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off",
                     "start")
        psql = [str(binaries / "psql"), "-h", str(sockets), "-p", str(port), "-U", "postgres",
                "-v", "ON_ERROR_STOP=1", "-c"]
        _as_postgres(*psql, f"CREATE ROLE slipway LOGIN PASSWORD '{password}'")
        _as_postgres(*psql, "CREATE DATABASE slipway OWNER slipway")
        url = f"postgresql+psycopg://slipway:{password}@127.0.0.1:{port}/slipway"
        deadline = time.monotonic() + START_TIMEOUT
        while True:  # accepting TCP connections on its loopback port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.1)
        yield url
    finally:
        _as_postgres(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                     "stop", check=False)
        shutil.rmtree(root, ignore_errors=True)
