"""Listening sockets held by the process that keeps the load balancers.

A keeper starts each HAProxy daemon with a listening socket it made itself (the config says
``bind "${SLIPWAY_LISTEN-<address>:<port>}"``; the daemon gets ``SLIPWAY_LISTEN=fd@N`` and
the descriptor) and keeps its own copy open. When the daemon dies (kill -9, a crash),
connections that arrive meanwhile wait in the socket's backlog instead of being refused, and
the daemon started again accepts them from the same socket: a kill costs only the
connections the dead process held. Started by hand (no variable), the same config binds the
address itself.

The registry is process-wide: every router of the keeping process shares one socket per
address and port. Only that process holds them (``HaproxyProcesses(hold_listeners=True)``):
a socket held by a process that does not restart daemons would keep the port taken with
nobody to serve it.
"""

from __future__ import annotations

import socket
import threading

# The variable the config's bind line reads (its default: the address and port).
LISTEN_VARIABLE = "SLIPWAY_LISTEN"
# Connections that may wait for a restarted daemon (the kernel caps it at somaxconn).
BACKLOG = 4096

_held: dict[tuple[str, int], socket.socket] = {}
_lock = threading.Lock()


def hold(address: str, port: int) -> socket.socket:
    """The listening socket for ``address:port``, made (bound, listening, no SO_REUSEPORT:
    a port another process has fails here) the first time; OSError when it cannot be."""
    with _lock:
        held = _held.get((address, port))
        if held is not None and held.fileno() >= 0:
            return held
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        made = socket.create_server((address, port), family=family, backlog=BACKLOG)
        _held[(address, port)] = made
        return made


def release(address: str, port: int) -> None:
    """Close the held socket of ``address:port`` (its environment stops on purpose)."""
    with _lock:
        held = _held.pop((address, port), None)
    if held is not None:
        held.close()
