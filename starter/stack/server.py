"""The embedded stack's server (``slipway server`` on loopback) and its first login.

`slipway up` and `slipway demo` start the server next to Temporal and the worker, then make
sure the person who ran them can use the ``slipway`` client at once: on first start (or when
the saved token no longer opens this stack's catalogue) they create an API token with every
role for that person and save it where the client looks (starter/client/credentials.py).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import subprocess
import sys
import time

from catalogue.store import CatalogueError, Store
from catalogue.tokens import ROLES
from schemas.settings import Settings
from starter.client import credentials
from starter.service.tokens import caller_for_token, create_token, revoke_token
from starter.stack.pids import log_tail, pid_alive, read_pids, spawn, terminate
from starter.stack.processes import REPO_ROOT, STOP_TIMEOUT, StackError, log_dir, port_open, run_dir

SERVER_START_TIMEOUT = 60.0
SERVER_EXPECT = "starter.cli server"


def server_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.server_port}"


def start_server(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Start ``slipway server`` on loopback in the background; wait until it listens.
    Returns None when the one from the pid file still runs."""
    pid_file = run_dir(settings) / "server.pid"
    if any(pid_alive(pid, SERVER_EXPECT) for pid in read_pids(pid_file)):
        return None
    if port_open("127.0.0.1", settings.server_port):
        raise StackError(f"port {settings.server_port} is taken by another program: set "
                         "SLIPWAY_SERVER_PORT to a free one")
    log = log_dir(settings) / "server.log"
    proc = spawn([sys.executable, "-m", "starter.cli", "server", "--host", "127.0.0.1",
                  "--port", str(settings.server_port)], log, pid_file, "server", cwd=REPO_ROOT)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    try:
        while not port_open("127.0.0.1", settings.server_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StackError(f"the server did not listen on 127.0.0.1:"
                                 f"{settings.server_port}; last lines of {log}:\n"
                                 f"{log_tail(log)}")
            time.sleep(0.2)
    except BaseException:
        terminate(proc.pid, STOP_TIMEOUT)
        pid_file.unlink(missing_ok=True)
        raise
    return proc


def operator() -> str:
    """The person running the stack: $SLIPWAY_USER, else the operating-system user."""
    try:
        return os.environ.get("SLIPWAY_USER") or getpass.getuser()
    except (OSError, KeyError):
        return f"uid-{os.getuid()}"


def ensure_local_login(settings: Settings, store: Store) -> str:
    """Make the client logged in to this stack as its operator, with every role; returns
    what was done, for the person to read."""
    url = server_url(settings)
    saved = credentials.load_saved()
    if (saved.get("url") == url and saved.get("token")
            and caller_for_token(store, saved["token"]) is not None):
        return f"client logged in to {url} ({credentials.credentials_path()})"
    user = operator()
    name = f"{user}-local"
    # A token of that name whose value was lost (credentials removed): replace it.
    with contextlib.suppress(CatalogueError):
        revoke_token(store, name, actor=user)
    _, token = create_token(store, user, name=name, actor=user, roles=list(ROLES))
    path = credentials.save(url, token)
    return (f"client logged in to {url} as {user} with every role (token {name}, saved in "
            f"{path}); give others their own: `slipway token create USER`")
