"""An environment's HAProxy config: rendered from its frontend and recorded servers, and read
back for the frontend it configures.

The config carries the backend's servers as they were last recorded: a daemon started from it
(killed and restarted, the host rebooted, started by hand) serves from its first accepted
connection, with no empty-backend window. The running daemon never re-reads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from integrations.haproxy.common import (
    BACKEND,
    FRONTEND,
    METRICS_PATH,
    _check_address,
    _check_server,
    _check_weight,
)
from integrations.haproxy.lane_table import (
    LaneTable,
    render_baseline_rules,
    render_frontend_rules,
    render_lanes_backend,
    render_slot_servers,
)
from integrations.haproxy.listeners import LISTEN_VARIABLE
from schemas.lb_intent import FrontendIntent, ServerIntent

# What every server of a backend with health checks gets, in the config and at runtime.
HEALTH_CHECK_OPTIONS = "check inter 1s fall 3 rise 2"

# ``bind 127.0.0.1:18080`` (configs written before held listeners) or
# ``bind "${SLIPWAY_LISTEN-127.0.0.1:18080}"``.
_BIND_RE = re.compile(r'^\s*bind\s+"?(?:\$\{\w+-)?\S*?:(\d+)\}?"?\s*$', re.MULTILINE)
_HEALTH_RE = re.compile(r"^\s*option httpchk GET (\S+)\s*$", re.MULTILINE)


def configured_frontend(text: str) -> FrontendIntent | None:
    """The port and health path a config sets; None when it binds no port."""
    bind = _BIND_RE.search(text)
    if bind is None:
        return None
    health = _HEALTH_RE.search(text)
    return FrontendIntent(bind_port=int(bind.group(1)),
                          health_path=health.group(1) if health else None)


def render_config(key: str, *, bind_address: str, bind_port: int, health_path: str | None,
                  servers: Mapping[str, ServerIntent], socket_path: Path,
                  pid_path: Path, lanes: LaneTable | None = None,
                  lanes_map: Path | None = None) -> str:
    """The daemon's config: frontend on ``bind_port``, backend ``be`` with ``servers``, and
    the lane routing of ``lanes`` by the map file ``lanes_map`` (integrations/haproxy/
    lane_table.py; without a map file, no lane routing).

    A server recorded as draining is written with weight 0: HAProxy has no drain keyword
    in its config, and for a fresh process (nothing in flight) weight 0 is what drain
    means, no new requests; the reconciler then sets its drain state and recorded
    weight over the runtime API. Health-checked servers start UP (HAProxy's default),
    so the first connection already has servers; one whose replica is gone fails its
    checks within 3 s and, meanwhile, `option redispatch` retries elsewhere.
    """
    check = f"    option httpchk GET {health_path}\n" if health_path else ""
    lines = []
    for name, entry in sorted(servers.items()):
        _check_server(name)
        _check_address(entry.address)
        _check_weight(entry.weight)
        if not 0 < entry.port < 65536:
            raise ValueError(f"invalid port {entry.port} for server {name}")
        draining = entry.state == "drain"
        line = (f"    server {name} {entry.address}:{entry.port} "
                f"weight {0 if draining else entry.weight}")
        if health_path:
            line += f" {HEALTH_CHECK_OPTIONS}"
        if draining:
            line += f"  # draining (recorded weight {entry.weight})"
        lines.append(line + "\n")
    lane_rules = baseline_rules = slot_servers = lanes_backend = ""
    if lanes_map is not None:
        table = lanes or LaneTable()
        options = HEALTH_CHECK_OPTIONS if health_path else ""
        lane_rules = render_frontend_rules(table, lanes_map)
        baseline_rules = render_baseline_rules(table)
        slot_servers = render_slot_servers(table, False, options)
        lanes_backend = "\n" + render_lanes_backend(key, table, check, options)
    return (
        f"# Managed by Slipway for environment {key}: servers as the router recorded them,\n"
        "# changed at runtime over the admin socket; this file is what a restart starts "
        "from.\n"
        "global\n"
        f"    stats socket {socket_path} mode 600 level admin\n"
        "    stats timeout 30s\n"
        f"    pidfile {pid_path}\n"
        "    maxconn 4096\n"
        # Without this, HAProxy sets SO_REUSEPORT and a second process would silently share
        # a port that is already taken instead of failing.
        "    noreuseport\n"
        "\n"
        "defaults\n"
        "    mode http\n"
        "    timeout connect 2s\n"
        "    timeout client 30s\n"
        "    timeout server 30s\n"
        "    timeout http-request 10s\n"
        "    timeout http-keep-alive 5s\n"
        "    timeout queue 10s\n"
        "    timeout check 2s\n"
        "    option redispatch\n"
        "    retries 3\n"
        # One server connection per request: clients may keep alive, yet every request is
        # balanced anew, a drained server's session count falls to 0 as soon as its in-flight
        # requests end, and no idle pooled connection blocks `del server`.
        "    option http-server-close\n"
        "\n"
        f"frontend {FRONTEND}\n"
        # The keeper's listening socket when it passes one (integrations/haproxy/
        # listeners.py), else the address and port themselves (a start by hand).
        f'    bind "${{{LISTEN_VARIABLE}-{bind_address}:{bind_port}}}"\n'
        # HAProxy's own Prometheus exporter, for a Prometheus on this host to scrape
        # (canary analysis): answered by HAProxy, never forwarded, loopback clients only.
        f"    http-request use-service prometheus-exporter if {{ path {METRICS_PATH} }} "
        "{ src 127.0.0.0/8 ::1 }\n"
        f"{lane_rules}"
        f"    default_backend {BACKEND}\n"
        "\n"
        f"backend {BACKEND}\n"
        "    balance roundrobin\n"
        f"{check}"
        f"{baseline_rules}"
        + "".join(lines)
        + slot_servers
        + lanes_backend
    )
