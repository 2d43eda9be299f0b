"""The process a command of the ``slipway`` client runs in, on the server.

The server runs each command the client sends (``POST /api/commands``) in a process of its
own, forked from a *forkserver* that imported the command tree once: a command starts in
milliseconds, its output is its own (the commands print to stdout/stderr and rich consoles),
a command whose client went away is killed, and no command shares a thread with the
server's event loop. The process acts as the token's caller (:class:`Session`) before any
command code runs, checks the command's role and scope
(:mod:`starter.service.command_policy`) once its arguments are parsed, and sends what it
prints back through a pipe as ``(stream, text)`` pairs, then ``("exit", status)``.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from starter.service.identity import Session

# Imported once by the forkserver: every command process starts with the tree loaded.
PRELOAD = ["starter.api.command_preload"]
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


@dataclass(frozen=True)
class CommandCall:
    """One command as the client sent it: its words, its terminal, and the files it named
    (argv index → content), which the command reads from a private directory."""

    argv: list[str]
    columns: int = 80
    terminal: bool = False
    files: dict[int, str] = field(default_factory=dict)
    # The caller's W3C trace context: what the command starts in Temporal joins its trace.
    traceparent: str = ""


class PipeStream(io.TextIOBase):
    """A text stream whose writes travel to the server as ``(name, text)``."""

    def __init__(self, connection: Connection, name: str, terminal: bool,
                 shown_as: dict[str, str] | None = None) -> None:
        super().__init__()
        self._connection = connection
        self._name = name
        self._terminal = terminal
        # An uploaded file's path here → the name the caller gave it, in what they read.
        self._shown_as = shown_as or {}

    def write(self, text: str | bytes) -> int:  # type: ignore[override]
        # click writes bytes when it finds no text layer it trusts.
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        for path, name in self._shown_as.items():
            text = text.replace(path, name)
        if text:
            self._connection.send((self._name, text))
        return len(text)

    def isatty(self) -> bool:
        return self._terminal

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"


def _with_uploads(call: CommandCall, directory: Path) -> tuple[list[str], dict[str, str]]:
    """argv with each uploaded file's word replaced by its path in ``directory``, and each
    such path → the name the caller gave."""
    argv = list(call.argv)
    shown_as: dict[str, str] = {}
    for index, content in call.files.items():
        if 0 <= index < len(argv):
            prefix, sep, given = argv[index].partition("=")
            option = bool(sep) and prefix.startswith("--")
            given = given if option else argv[index]
            path = directory / f"{index}-{Path(given).name or 'upload'}"
            path.write_text(content)
            argv[index] = f"{prefix}={path}" if option else str(path)
            shown_as[str(path)] = given
    return argv, shown_as


def _authorize(session: Session) -> Any:
    """The guard of every leaf command: the policy's answer, as the one-line error exit."""
    from starter.cli.console import fail, open_store
    from starter.service.command_policy import authorize

    def guard(path: str, params: dict[str, Any]) -> None:
        store = open_store()
        try:
            authorize(store, session, path, params)
        except Exception as error:  # CommandRefused, or the catalogue failing: refuse
            fail(str(error))
        finally:
            store.engine.dispose()

    return guard


def run_command(connection: Connection, call: CommandCall, session: Session,
                environ: dict[str, str]) -> None:
    """The command process: act as ``session``, run ``call``, send its output and status."""
    uploads = Path(tempfile.mkdtemp(prefix="slipway-upload-")).resolve()
    argv, shown_as = _with_uploads(call, uploads)
    out = PipeStream(connection, "out", call.terminal, shown_as)
    err = PipeStream(connection, "err", call.terminal, shown_as)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    # The server's settings (the forkserver's environment is from its own start).
    os.environ.clear()
    os.environ.update(environ, COLUMNS=str(call.columns))
    from catalogue.store import Store
    from integrations import tracing
    from schemas.settings import get_settings
    from starter.cli.console import fit_consoles
    from starter.cli.main import run
    from starter.service.identity import begin_session

    get_settings.cache_clear()
    # The server migrated its catalogue when it started (starter.api.app).
    Store.assume_migrated(get_settings().resolved_database_url())
    fit_consoles(call.columns, call.terminal)
    tracing.configure("slipway-server")
    tracing.continue_trace(call.traceparent)
    code = 1
    try:
        begin_session(replace(session, uploads=str(uploads)))
        code = run(argv, guard=_authorize(session))
    finally:
        tracing.flush()  # the process ends with os._exit: export what it recorded first
        shutil.rmtree(uploads, ignore_errors=True)
        with contextlib.suppress(OSError, ValueError):
            connection.send(("exit", code))
            connection.close()
        # No interpreter teardown: the Temporal SDK's threads may outlive the command's
        # loop (see starter.cli.main.main).
        os._exit(0)


def warm_up() -> None:
    """Start the forkserver now (it imports the command tree, ~1 s) rather than on the
    first command."""
    from multiprocessing import forkserver

    forkserver.ensure_running()


def start_command(call: CommandCall, session: Session, environ: dict[str, str],
                  ) -> tuple[multiprocessing.process.BaseProcess, Connection]:
    """Start ``call`` in a new command process with ``environ`` (the server's settings);
    returns the process and the end of its pipe."""
    receiving, sending = _context.Pipe(duplex=False)
    process = _context.Process(target=run_command, daemon=True,
                               args=(sending, call, session, environ))
    process.start()
    sending.close()
    return process, receiving
