"""An HAProxy daemon as a process: is this pid ours, and stopping it until it has let go of
its port. Read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def runs_config(pid: int, config: Path) -> bool:
    """True when ``pid`` is a live (not zombie) process started with ``config``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    # A daemon reparented to a PID 1 that doesn't reap stays as a zombie: that is dead.
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    # Guard against pid reuse: it must be *our* config.
    return os.fsencode(config) in cmdline


def start_time(pid: int) -> str | None:
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


def terminate(pid: int, timeout: float) -> bool:
    """SIGTERM ``pid``, then SIGKILL, each followed by a wait of up to ``timeout`` seconds
    for it to be gone; True once it is (or was already)."""
    started = start_time(pid)
    if started is None:
        return True  # exited meanwhile

    def exited() -> bool:
        # Not `runs_config`: an exiting process loses its cmdline (so no longer looks like
        # ours) before it closes its files, and would still hold the port. Gone means no
        # such process, a zombie, or the pid reused by a process started later.
        return start_time(pid) != started

    # SIGTERM is HAProxy's hard stop: listeners and connections close at once.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while not exited():
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        else:
            return True
    return False
