"""A real ``slipway server`` process for a test, and the ``slipway`` client run against it.

The server gets the test's settings through its environment (as an operator would give
them); the client gets only the server's URL and a token: no catalogue, no Temporal address
(they stay the hermetic, unreachable defaults), so every command it runs can only have gone
through the server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from schemas.settings import Settings
from tests.support.hermetic import clean_env

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def slipway_server(settings: Settings, log: Path, **extra: str) -> Iterator[str]:
    """Run ``python -m starter.cli server`` with ``settings`` on a free loopback port until
    the block ends; yields its URL. Stopped by process group (its command processes too)."""
    port = _free_port()
    env = clean_env(**{**settings.environment(), "PYTHONPATH": str(REPO), **extra})
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "starter.cli", "server", "--port", str(port)], cwd=REPO,
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/openapi.json", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                assert server.poll() is None, f"server exited: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"server silent: {log.read_text()[-3000:]}"
                time.sleep(0.2)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


def client_env(url: str, token: str, **extra: str) -> dict[str, str]:
    """The environment of a person's ``slipway``: a server and a token, nothing else."""
    return clean_env(SLIPWAY_URL=url, SLIPWAY_TOKEN=token, PYTHONPATH=str(REPO),
                     COLUMNS="200", **extra)


def slipway(env: dict[str, str], *args: str, timeout: float = 180,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m starter ARGS``, the client, as a person runs it."""
    return subprocess.run([sys.executable, "-m", "starter", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, input=stdin)
