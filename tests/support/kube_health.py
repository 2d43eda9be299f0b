"""What the test control plane's hollow pods answer to readiness probes.

The hollow node (tests/support/kube_server.py) runs no containers, but its kubelet does run
the pods' readiness probes, against the single address every hollow pod has.
"""

from __future__ import annotations

import http.server
import secrets
import threading
from typing import Any

# Every pod on the hollow node has one address, a loopback one the session picks
# (SLIPWAY_HOLLOW_POD_IP, scripts/kubernetes/hollow-node-loopback.patch), and the node's
# kubelet sends the readiness probes there: the session's health server answers them, on the
# container ports the tests use. Two sessions at once never probe each other's.
PROBE_PORTS = (8080,)


def pod_address() -> str:
    """A random address in 127.100.0.1–127.249.255.254: loopback, and unlikely to be taken."""
    a, b, c = secrets.randbelow(150) + 100, secrets.randbelow(256), secrets.randbelow(254) + 1
    return f"127.{a}.{b}.{c}"


class HealthServer:
    """What the hollow node's pods answer to readiness probes: 200, or 503 for the paths in
    :attr:`failing` (a version whose health check fails, for real, through the kubelet)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.failing: set[str] = set()
        self.probes = 0
        health = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (the stdlib's name)
                health.probes += 1
                code = 503 if self.path in health.failing else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self._servers = [http.server.ThreadingHTTPServer((address, port), Handler)
                         for port in PROBE_PORTS]
        self._threads = [threading.Thread(target=server.serve_forever, daemon=True)
                         for server in self._servers]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


