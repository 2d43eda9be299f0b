"""HAProxy's runtime-API vocabulary: names, limits, state bits, errors and parsers.

Shared by the process manager (``process``) and the runtime-API client (``router``).
"""

from __future__ import annotations

import re

from pydantic import BaseModel

BACKEND = "be"
# Lane slots share backend ``be`` with the environment's servers (integrations/haproxy/
# lane_table.py); everything that reads ``be``'s servers leaves them out.
LANE_SLOT_PREFIX = "lane_"
FRONTEND = "fe"
# Where an environment's HAProxy answers with its Prometheus metrics (loopback clients only).
METRICS_PATH = "/.slipway/metrics"

# sun_path holds 108 bytes with the NUL; HAProxy binds to "<path>.<pid>.tmp" first and renames,
# so the usable length is ~95 bytes (pid up to 7 digits). Keep a margin.
_MAX_SOCKET_PATH = 90
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SERVER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
_MAX_WEIGHT = 256
# A server's address as HAProxy takes it on a `server` line and in `add server`: an IPv4/IPv6
# address or a host name; nothing that would end the word or start a comment in the config.
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9._:\[\]-]{1,255}$")

# `show servers state` srv_admin_state bits (HAProxy include/haproxy/server-t.h).
_ADMIN_MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40  # forced/inherited/config/resolution/hostname
_ADMIN_DRAIN_BITS = 0x08 | 0x10  # forced/inherited drain
_OP_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


class HaproxyError(RuntimeError):
    """HAProxy refused a runtime command, or its process could not be started or reached."""

    def __init__(self, message: str, command: str | None = None, answer: str | None = None):
        self.command = command
        self.answer = answer
        detail = message
        if command is not None:
            detail += f" (command: {command!r}"
            detail += f", answer: {answer!r})" if answer is not None else ")"
        super().__init__(detail)


class LbServer(BaseModel):
    """One server of an environment's backend, as HAProxy reports it right now."""

    name: str
    address: str
    port: int
    weight: int
    admin_state: str  # "ready" | "drain" | "maint"
    operational_state: str  # "running" | "stopped" | "starting" | "stopping"
    status: str  # HAProxy's own `show stat` status, e.g. "UP", "DRAIN", "MAINT", "DOWN"
    draining: bool
    current_sessions: int
    queued: int = 0


def _check_server(name: str) -> None:
    if not _SERVER_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid server name {name!r}: use [A-Za-z0-9._:-]")


def _check_address(address: str) -> None:
    if not _ADDRESS_RE.fullmatch(address):
        raise ValueError(f"invalid server address {address!r}: an IP address or host name")


def _check_weight(weight: int) -> None:
    if not 0 <= weight <= _MAX_WEIGHT:
        raise ValueError(f"weight must be between 0 and {_MAX_WEIGHT}, got {weight}")


def _parse_servers_state(answer: str) -> list[dict[str, str]]:
    """Parse `show servers state` (format version 1: a version line, a `#` header, rows)."""
    lines = [line for line in answer.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("#")), None)
    if header is None:
        return []
    columns = header.lstrip("# ").split()
    rows = []
    for line in lines[lines.index(header) + 1 :]:
        values = line.split()
        if len(values) >= len(columns):
            rows.append(dict(zip(columns, values, strict=False)))
    return rows


def _parse_stat(answer: str) -> dict[str, dict[str, str]]:
    """Parse `show stat` CSV into {server name: {column: value}} for our backend."""
    lines = [line for line in answer.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        return {}
    columns = lines[0][2:].split(",")
    result = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        if row.get("pxname") == BACKEND and row.get("svname") not in ("FRONTEND", "BACKEND") \
                and not row.get("svname", "").startswith(LANE_SLOT_PREFIX):
            result[row["svname"]] = row
    return result


def _lb_servers(state: str, stats: dict[str, dict[str, str]]) -> list[LbServer]:
    """The backend's servers from `show servers state` and, by name, their `show stat` rows
    (empty: no status or session counts known)."""
    result = []
    for row in _parse_servers_state(state):
        name = row["srv_name"]
        if name.startswith(LANE_SLOT_PREFIX):
            continue
        admin = int(row["srv_admin_state"])
        draining = bool(admin & _ADMIN_DRAIN_BITS)
        if admin & _ADMIN_MAINT_BITS:
            admin_state = "maint"
        elif draining:
            admin_state = "drain"
        else:
            admin_state = "ready"
        stat = stats.get(name, {})
        result.append(LbServer(
            name=name,
            address=row["srv_addr"],
            port=int(row["srv_port"]),
            weight=int(row["srv_uweight"]),
            admin_state=admin_state,
            operational_state=_OP_STATES.get(int(row["srv_op_state"]), "unknown"),
            status=stat.get("status", ""),
            draining=draining,
            current_sessions=int(stat.get("scur") or 0),
            queued=int(stat.get("qcur") or 0),
        ))
    return result
