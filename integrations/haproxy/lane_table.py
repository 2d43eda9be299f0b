"""Header-routed lanes on an environment's HAProxy: the lane table, its map file and the config
that routes by it.

A request carrying a lane key (header ``x-slipway-lane: <lane>``, else the ``slipway-lane``
member of a W3C ``baggage`` header) is looked up in the environment's lane map (lane → slot).
Slots are a fixed set of static servers ``lane_<n>``, declared at weight 0 in the baseline's
backend ``be`` (lanes that fall back) and in backend ``lanes`` (lanes that fail closed):
HAProxy cannot create servers that ``use-server`` names at runtime, but it can point a
declared one at a new address, enable it and change a map over the admin socket, so adding,
moving and removing a lane's instance never reloads the daemon. In ``be``, a slot that is
not up (failing its health check, stopped, unassigned) is skipped and the baseline serves;
in ``lanes`` there is no baseline, and a slot that is down answers 503 naming the lane.

The table (``<key>.lanes.json``) is the durable copy, as the servers' intent is for ``be``:
the config and the map file are rendered from it, so a daemon started again routes as before.
It also names the lane of a lane's own entry frontend (``entry``): requests entering there
get the lane's key set, for browsers and tools that cannot add headers.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from integrations.haproxy.common import BACKEND, LANE_SLOT_PREFIX, _check_address

LANE_HEADER = "x-slipway-lane"
BAGGAGE_MEMBER = "slipway-lane"
# Set on every keyed answer: "lane" when the lane's instance served it, "baseline" otherwise.
ROUTE_HEADER = "x-slipway-lane-route"
LANES_BACKEND = "lanes"
# Lanes one environment can route at once: slots are declared servers, fixed per config.
LANE_SLOTS = 32
# What an unassigned slot points at (it is disabled, so nothing is ever sent there).
_UNUSED = ("127.0.0.1", 1)


class LaneRoute(BaseModel):
    """Where one lane's instance of the environment's app answers, and in which slot."""

    slot: int
    address: str
    port: int
    # True: while the lane's instance is down its keyed requests get a 503, never the
    # baseline. False (default): they fall back to the baseline.
    fail_closed: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The lane instance's own environment key and server name: where the reconciler looks
    # for it when its container answers elsewhere (restarted by the engine).
    source: str = ""
    server: str = ""

    def map_value(self) -> str:
        """The slot as the map holds it: ``<n>``, or ``<n>c`` for a lane that fails closed."""
        return f"{self.slot}{'c' if self.fail_closed else ''}"


class LaneTable(BaseModel):
    """One environment's lanes: the routes of its lanes, and the lane its frontend sets."""

    routes: dict[str, LaneRoute] = Field(default_factory=dict)
    entry: str = ""  # this frontend is a lane's own entry: requests get this lane's key

    def free_slot(self) -> int:
        used = {route.slot for route in self.routes.values()}
        for slot in range(LANE_SLOTS):
            if slot not in used:
                return slot
        raise ValueError(f"all {LANE_SLOTS} lane slots of this environment are taken: "
                         "delete a lane that is no longer used")


def table_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.lanes.json"


def map_path(directory: Path, key: str) -> Path:
    return directory / f"{key}.lanes.map"


def read_table(directory: Path, key: str) -> LaneTable:
    """The key's lane table; empty when it has none."""
    try:
        return LaneTable.model_validate_json(table_path(directory, key).read_text())
    except FileNotFoundError:
        return LaneTable()


def write_table(directory: Path, key: str, table: LaneTable) -> None:
    """Replace the table and the map file rendered from it, each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    _replace(table_path(directory, key), table.model_dump_json(indent=1))
    write_map(directory, key, table)


def write_map(directory: Path, key: str, table: LaneTable) -> None:
    """The map file HAProxy loads at start: one ``<lane> <slot>`` line per route."""
    _replace(map_path(directory, key),
             "".join(f"{lane} {route.map_value()}\n"
                     for lane, route in sorted(table.routes.items())))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def slot_server(slot: int) -> str:
    return f"{LANE_SLOT_PREFIX}{slot}"


def slot_backend(route: LaneRoute) -> str:
    """The backend whose slot server the lane uses: ``lanes`` when it fails closed."""
    return LANES_BACKEND if route.fail_closed else BACKEND


def render_frontend_rules(table: LaneTable, lanes_map: Path) -> str:
    """The frontend's lane routing: read the key and look up its slot; a lane that fails
    closed goes to backend ``lanes``, every other request to ``be``."""
    lines = []
    if table.entry:
        # A lane's own entry: the lane's key for requests that come without one.
        lines.append(f"    http-request set-header {LANE_HEADER} {table.entry} "
                     f"unless {{ req.hdr({LANE_HEADER}) -m found }}")
    lines += [
        f"    http-request set-var(txn.lane) req.hdr({LANE_HEADER}) "
        f"if {{ req.hdr({LANE_HEADER}) -m found }}",
        # The baggage member when there is no header; the ACL first, because regsub answers
        # the whole header unchanged when its pattern does not match.
        f"    http-request set-var(txn.lane) 'req.fhdr(baggage),"
        f"regsub(\"^(.*[,;] *)?{BAGGAGE_MEMBER} *= *([A-Za-z0-9-]+).*$\",\"\\2\")' "
        f"if !{{ var(txn.lane) -m found }} "
        f"{{ req.fhdr(baggage) -m reg (^|[,;])\\s*{BAGGAGE_MEMBER}\\s*= }}",
        f"    http-request set-var(txn.lane_slot) var(txn.lane),map({lanes_map}) "
        "if { var(txn.lane) -m found }",
        f"    use_backend {LANES_BACKEND} if {{ var(txn.lane_slot) -m end c }}",
    ]
    return "\n".join(lines) + "\n"


def render_baseline_rules(table: LaneTable) -> str:
    """In backend ``be``: a lane's slot server for its keyed requests, and the route header.

    A lane that falls back has its slot here, at weight 0: only ``use-server`` picks it. A
    slot that is down (checks failed, or unassigned) makes HAProxy skip the rule; a refused
    connection to it, or a keyed GET it drops unanswered, is retried on the baseline
    (``option redispatch``): a lane's instance stopping costs its keyed GETs nothing, even
    before the checks notice.
    """
    served = "lane" if table.entry else "baseline"
    lines = [
        # A lane instance that dies while serving a keyed GET gives no answer: such a
        # request is tried again, and lands on the baseline (`option redispatch`). Only
        # keyed, idempotent requests: everything else keeps HAProxy's default (connection
        # failures only), so a release's traffic behaves as before.
        "    retry-on conn-failure empty-response",
        "    http-request disable-l7-retry unless { var(txn.lane_slot) -m found } METH_GET",
f"    http-response set-header {ROUTE_HEADER} lane "
             f"if {{ srv_name -m beg {LANE_SLOT_PREFIX} }}",
             f"    http-response set-header {ROUTE_HEADER} {served} "
             f"if !{{ srv_name -m beg {LANE_SLOT_PREFIX} }} {{ var(txn.lane) -m found }}"]
    lines += [f"    use-server {slot_server(slot)} if {{ var(txn.lane_slot) -m str {slot} }}"
              for slot in range(LANE_SLOTS)]
    return "\n".join(lines) + "\n"


def render_slot_servers(table: LaneTable, fail_closed: bool, check_options: str) -> str:
    """The slot servers of ``be`` (``fail_closed`` False) or of ``lanes`` (True): each slot
    points at its lane's instance in the backend its lane uses, and is disabled elsewhere."""
    by_slot = {route.slot: route for route in table.routes.values()
               if route.fail_closed == fail_closed}
    lines = []
    for slot in range(LANE_SLOTS):
        route = by_slot.get(slot)
        address, port = (route.address, route.port) if route else _UNUSED
        _check_address(address)
        # Weight 0: only use-server ever picks a slot, never the balancing.
        line = f"    server {slot_server(slot)} {address}:{port} weight 0"
        if check_options:
            line += f" {check_options}"
        if route is None:
            line += " disabled"
        lines.append(line)
    return "\n".join(lines) + "\n"


def render_lanes_backend(key: str, table: LaneTable, health_check: str,
                         check_options: str) -> str:
    """Backend ``lanes``, for lanes that fail closed: the lane's slot server, or a 503 that
    names the lane while it is down. No baseline here, so nothing is ever retried there."""
    lines = [f"backend {LANES_BACKEND}", "    balance roundrobin"]
    if health_check:
        lines.append(health_check.rstrip("\n"))
    lines.append(f"    http-response set-header {ROUTE_HEADER} lane")
    for slot in range(LANE_SLOTS):
        server = slot_server(slot)
        lines.append(f"    http-request return status 503 content-type text/plain lf-string "
                     f"\"lane %[var(txn.lane)] has no ready instance behind {key} and fails "
                     f"closed: start or redeploy it\\n\" "
                     f"if {{ var(txn.lane_slot) -m str {slot}c }} "
                     f"!{{ srv_is_up({LANES_BACKEND}/{server}) }}")
        lines.append(f"    use-server {server} if {{ var(txn.lane_slot) -m str {slot}c }}")
    return "\n".join(lines) + "\n" + render_slot_servers(table, True, check_options)
