"""Processes of the embedded stack: pid files, spawning into a session, signalling, stopping.

Plain process plumbing with no knowledge of Temporal or the worker, so ``processes`` reads as
what the stack is made of.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO


def read_pids(pid_file: Path) -> list[int]:
    """Pids in a pid file (HAProxy may write several, one per line); [] if absent or bad."""
    try:
        text = pid_file.read_text()
    except OSError:
        return []
    return [int(tok) for tok in text.split() if tok.isdigit()]


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def pid_alive(pid: int, expect: str | None = None) -> bool:
    """True when pid runs and is not a zombie.

    ``expect`` is a substring of the command line: a pid file that outlived a reboot may name
    a pid now used by an unrelated process, which must never be signalled.
    """
    # Our own exited children stay zombies until reaped; reap them so they read as dead.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        state = ""
    if state == "Z":
        return False
    command = cmdline(pid)
    return not (expect and command and expect not in command)


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def open_log(path: Path, what: str) -> IO[bytes]:
    """Append to a log file, with a header so successive runs can be told apart."""
    handle = path.open("ab")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    handle.write(f"\n==== {stamp} starting {what} ====\n".encode())
    handle.flush()
    return handle


def spawn(cmd: list[str], log: Path | None, pid_file: Path, what: str,
          cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start cmd in its own session (Ctrl-C in a terminal doesn't reach it; we stop it in
    order), stdout/stderr to ``log`` (or inherited when None), and record its pid; ``env``
    is added to this process's environment."""
    out: IO[bytes] | None = open_log(log, what) if log else None
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**os.environ, **env} if env else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,
        )
    finally:
        if out:
            out.close()  # the child holds its own descriptor
    pid_file.write_text(f"{proc.pid}\n")
    return proc


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal a process, and its whole group when it leads one (we start each in its own
    session, so helpers it spawned go down with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid and pid != os.getpgrp():
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
