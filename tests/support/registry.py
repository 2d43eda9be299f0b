"""A real OCI distribution registry for tests: Debian's `docker-registry` with htpasswd auth.

`running_registry()` starts `docker-registry serve` on 127.0.0.1:<free port> with a fresh
storage root, deletion enabled and basic auth, waits until `/v2/` answers 401, and kills it
afterwards. Loopback registries need no TLS for docker clients.
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

import httpx

REGISTRY_BIN = "docker-registry"
HTPASSWD_BIN = "htpasswd"


@dataclass(frozen=True)
class RegistryServer:
    """Where a test registry listens and how to log in to it."""

    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT, the registry part of image references
    username: str
    password: str = field(repr=False)
    root: Path = field(repr=False)


def registry_available() -> bool:
    return shutil.which(REGISTRY_BIN) is not None and shutil.which(HTPASSWD_BIN) is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(root: Path, port: int) -> str:
    return (
        "version: 0.1\n"
        "log:\n"
        "  level: warn\n"
        "storage:\n"
        "  filesystem:\n"
        f"    rootdirectory: {root / 'data'}\n"
        "  delete:\n"
        "    enabled: true\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        f"  secret: {secrets.token_hex(16)}\n"
        "auth:\n"
        "  htpasswd:\n"
        "    realm: slipway\n"
        f"    path: {root / 'htpasswd'}\n"
    )


@contextlib.contextmanager
def running_registry(
    username: str = "slipway", password: str | None = None, startup_timeout: float = 20.0
) -> Iterator[RegistryServer]:
    """Start a docker-registry with htpasswd auth on a free loopback port; stop it after."""
    password = password or secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="slipway-registry-") as tmp:
        root = Path(tmp)
        htpasswd = subprocess.run(
            [HTPASSWD_BIN, "-Bbn", username, password],
            capture_output=True,
            text=True,
            check=True,
        )
        (root / "htpasswd").write_text(htpasswd.stdout)
        port = _free_port()
        (root / "config.yml").write_text(_config(root, port))
        log = open(root / "registry.log", "wb")  # noqa: SIM115 - closed in finally
        # Own session so the whole process group can be killed, whatever it spawns.
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(root / "config.yml")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc, root / "registry.log", startup_timeout)
            yield RegistryServer(
                url=url,
                host=f"127.0.0.1:{port}",
                username=username,
                password=password,
                root=root,
            )
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited ({proc.returncode}): {log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            # 401 proves both the HTTP server and the auth setup are up.
            if httpx.get(f"{url}/v2/", timeout=1.0).status_code == 401:
                return
        time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer on {url} in {timeout}s: {log.read_text()}")
