"""An environment's HAProxy admin socket: where it is, and connections carrying one command
each or, in a batch, several.

Without it every command is a connection of its own (HAProxy answers a non-interactive
command and closes). A change that touches N servers (add, enable, weigh, drain, delete) would
open 3N connections; a session opens one. It runs in HAProxy's interactive mode (``prompt``):
every answer ends with the prompt, so each command's answer is read, and checked, before the
next command is sent. That keeps the router's logic unchanged (a refused command stops the
change where it stands) at the cost of one loopback round trip per command, not a connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from integrations.haproxy.common import _MAX_SOCKET_PATH, HaproxyError

# What ends every answer in interactive mode: the answer's last newline, then "> ".
PROMPT = b"\n> "


class RuntimeSession:
    """An open admin-socket connection in interactive mode; :meth:`send` one command at a
    time. Socket errors (HAProxy gone, a timeout) are raised as ``OSError``."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buffer = b""
        self._broken = False
        self._exchange(b"prompt\n")  # answered by the first prompt: interactive from here on

    def send(self, command: str) -> str:
        """Send ``command`` and return its whole answer (a silent command's is "\\n")."""
        return self._exchange(command.encode() + b"\n")

    def _exchange(self, line: bytes) -> str:
        if self._broken:  # an answer cut short would be read as the next command's
            raise ConnectionResetError("the admin connection failed earlier in this batch")
        try:
            self.conn.sendall(line)
            return self._answer()
        except OSError:
            self._broken = True
            raise

    def _answer(self) -> str:
        while (end := self._buffer.find(PROMPT)) < 0:
            chunk = self.conn.recv(65536)
            if not chunk:
                raise ConnectionResetError("HAProxy closed the admin connection")
            self._buffer += chunk
        answer, self._buffer = self._buffer[:end + 1], self._buffer[end + len(PROMPT):]
        return answer.decode(errors="replace")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sendall(b"quit\n")
        self.conn.close()


class AdminSocket:
    """The runtime-API side of :class:`~integrations.haproxy.process.HaproxyProcesses`:
    every command goes through :meth:`_send`, over a connection of its own or, inside
    :meth:`_batch`, over the batch's session."""

    dir: Path
    command_timeout: float
    # Open sessions of each thread, by key: activities of one router run in several threads.
    _local: threading.local

    def _sockpath_record(self, key: str) -> Path:
        return self.dir / f"{key}.sockpath"

    def socket_path(self, key: str) -> Path:
        """The admin socket for ``key``; a short /tmp path when the natural one is too long."""
        record = self._sockpath_record(key)
        if record.exists():
            return Path(record.read_text().strip())
        natural = self.dir / f"{key}.sock"
        if len(os.fsencode(natural)) <= _MAX_SOCKET_PATH:
            return natural
        digest = hashlib.sha256(os.fsencode(self.dir.resolve())).hexdigest()[:12]
        short_dir = Path("/tmp") / f"slipway-haproxy-{digest}"
        candidate = short_dir / f"{key}.sock"
        if len(os.fsencode(candidate)) > _MAX_SOCKET_PATH:
            candidate = short_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"
        return candidate

    def _connect(self, key: str) -> socket.socket:
        """A new connection to ``key``'s admin socket."""
        sock_path = self.socket_path(key)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(self.command_timeout)
            conn.connect(os.fspath(sock_path))
        except OSError:
            conn.close()
            raise
        return conn

    def _sessions(self) -> dict[str, RuntimeSession]:
        sessions: dict[str, RuntimeSession] | None = getattr(self._local, "sessions", None)
        if sessions is None:
            sessions = self._local.sessions = {}
        return sessions

    @contextlib.contextmanager
    def _batch(self, key: str) -> Iterator[None]:
        """Every command sent for ``key`` inside, by this thread, goes over one runtime-API
        connection (:class:`~integrations.haproxy.session.RuntimeSession`), each answer
        still checked on its own. Nested batches share the outer one's connection."""
        sessions = self._sessions()
        if key in sessions:
            yield
            return
        conn: socket.socket | None = None
        try:
            conn = self._connect(key)
            session = RuntimeSession(conn)
        except OSError as exc:
            if conn is not None:
                conn.close()
            raise self._unreachable(key, "prompt", exc) from exc
        sessions[key] = session
        try:
            yield
        finally:
            del sessions[key]
            session.close()

    def _unreachable(self, key: str, command: str, exc: OSError) -> HaproxyError:
        return HaproxyError(f"HAProxy for {key} is not reachable at {self.socket_path(key)} "
                            f"({exc}); call ensure_frontend first", command)

    def _send(self, key: str, command: str) -> str:
        """Send one command over the admin socket and return HAProxy's full answer: over the
        batch's connection inside :meth:`_batch`, else a connection of its own."""
        try:
            session = self._sessions().get(key)
            if session is not None:
                return session.send(command)
            with contextlib.closing(self._connect(key)) as conn:
                conn.sendall(command.encode() + b"\n")
                chunks = []
                # Non-interactive mode: HAProxy closes the connection after the answer.
                while chunk := conn.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise self._unreachable(key, command, exc) from exc
        return b"".join(chunks).decode(errors="replace")
