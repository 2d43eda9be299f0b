"""Keep the test suites off any stack they did not start.

A developer (or CI) may run ``make test`` while ``slipway up`` / ``make demo`` serves the
defaults: Temporal on localhost:7233, the state directory under ``~/.local/state/slipway``,
its SQLite catalogue and HAProxy ports from 18080. Every test process therefore starts with
Slipway's settings pointing at places of its own: a Temporal address and a server URL that
are unreachable by construction (a loopback port this process has bound and never listens
on, so nothing else can listen there), load balancer ports away from 18080, and a state
directory, catalogue, XDG state home and client login (XDG config home) in a temporary
directory. Tests that need Temporal start their own server
and say so explicitly.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

# Bound, never listening: a connect gets "connection refused", and as long as this process
# holds the socket no other process can listen on the port.
_HELD = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_HELD.bind(("127.0.0.1", 0))
UNREACHABLE_TEMPORAL = f"127.0.0.1:{_HELD.getsockname()[1]}"



def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def lb_port_start(span: int = 20) -> int:
    """The first of ``span`` free loopback ports for load balancer frontends, below the
    kernel's ephemeral range: a port the kernel hands out for outgoing connections (as
    ``bind(0)`` does) can be taken by any client between allocation and HAProxy's bind."""
    ceiling = _ephemeral_floor() - span
    for _ in range(200):
        start = random.randrange(20000, ceiling)
        if all(_bindable(port) for port in range(start, start + span)):
            return start
    raise RuntimeError(f"no {span} free loopback ports between 20000 and {ceiling}")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_ROOT = Path(tempfile.mkdtemp(prefix="slipway-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

# The settings every test process starts from; the developer's own SLIPWAY_* are dropped.
# The catalogue is the state directory's (no SLIPWAY_DATABASE_URL), so a child process given
# a state directory of its own gets a catalogue of its own too.
DEFAULTS: dict[str, str] = {
    "SLIPWAY_TEMPORAL_ADDRESS": UNREACHABLE_TEMPORAL,
    "SLIPWAY_STATE_DIR": str(_ROOT / "state"),
    "SLIPWAY_TEMPORAL_UI_URL": "http://127.0.0.1:9",
    # HAProxy binds with SO_REUSEPORT: a test frontend on the stack's port (18080…) would
    # silently take a share of its users' requests.
    "SLIPWAY_LB_PORT_START": str(lb_port_start()),
    "XDG_STATE_HOME": str(_ROOT / "xdg-state"),
    # The client's saved login (starter/client/credentials.py): the test process's own.
    "XDG_CONFIG_HOME": str(_ROOT / "xdg-config"),
    # The client's server, and the port `slipway up` would start one on: unreachable too
    # (a test that starts a server says where).
    "SLIPWAY_URL": f"http://{UNREACHABLE_TEMPORAL}",
    "SLIPWAY_SERVER_PORT": UNREACHABLE_TEMPORAL.rsplit(":", 1)[1],
}


def isolate_process_environment() -> None:
    """Replace this process's Slipway settings with :data:`DEFAULTS` (session start)."""
    for key in [key for key in os.environ if key.startswith("SLIPWAY_")]:
        del os.environ[key]
    os.environ.update(DEFAULTS)


def clean_env(**overrides: str) -> dict[str, str]:
    """An environment for a child process: the test process's own, with no Slipway setting
    but the hermetic defaults, then ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLIPWAY_")}
    env.update(DEFAULTS)
    env.update(overrides)
    return env


def scrub_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """For fixtures that rebuild settings from scratch: drop every ``SLIPWAY_*`` variable
    a test set, then restore the hermetic defaults (through ``monkeypatch``, so undone)."""
    for key in [key for key in os.environ if key.startswith("SLIPWAY_")]:
        monkeypatch.delenv(key)
    for key, value in DEFAULTS.items():
        monkeypatch.setenv(key, value)
