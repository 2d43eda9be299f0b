"""Lane routes on a running environment's HAProxy, over its admin socket (no reload).

Routing a lane points a free slot server (in ``be``, or in ``lanes`` for a lane that fails
closed) at the lane's instance, enables
it (health-checked like the baseline's servers) and then adds the lane to the map: a keyed
request finds the lane only once its server is in place. Unrouting goes the other way: the
map entry first (new keyed requests go to the baseline at once), then the slot is disabled;
requests in flight on it finish. Each change is written to the lane table (and the config
rendered from it) while the key's lock is held, so a daemon started again routes the same.
See integrations/haproxy/lane_table.py for the config side.
"""

from __future__ import annotations

from integrations.errors import PermanentRuntimeError
from integrations.haproxy.common import HaproxyError, _check_address
from integrations.haproxy.lane_table import (
    LaneRoute,
    LaneTable,
    map_path,
    read_table,
    slot_backend,
    slot_server,
    write_table,
)
from integrations.haproxy.router import HaproxyRouter

_ADDRESS_OK = ("", "IP changed", "no need to change", "port changed")
NOT_MAPPED_OK = ("", "Key not found")  # `del map` of a lane that is not mapped: fine


class LaneRouter:
    """Adds, moves and removes lanes' routes on the environments' load balancers."""

    def __init__(self, router: HaproxyRouter) -> None:
        self.router = router

    def table(self, key: str) -> LaneTable:
        return read_table(self.router.dir, key)

    def set_entry(self, key: str, lane: str) -> None:
        """Make ``key``'s frontend a lane's own entry (sets the lane's key on requests). Only
        the config carries it: call before the frontend is started."""
        with self.router._lock(key):
            table = self.table(key)
            if table.entry != lane:
                write_table(self.router.dir, key, table.model_copy(update={"entry": lane}))
                self.router._sync_config(key)

    def route(self, key: str, lane: str, address: str, port: int, fail_closed: bool = False,
              source: str = "", server: str = "") -> LaneRoute:
        """Send ``lane``'s keyed requests for ``key`` to address:port; idempotent. A lane that
        is routed already keeps its slot and moves there (a newer version of its instance).
        ``source``/``server``: the instance's own environment key and server name, so the
        reconciler can follow it (integrations/lb_reconcile.py)."""
        _check_address(address)
        if not 0 < port < 65536:
            raise ValueError(f"invalid port {port}")
        router = self.router
        with router._lock(key):
            if not router.is_running(key):
                raise HaproxyError(f"the load balancer of {key} is not running: release the "
                                   "app to that environment first")
            with router._batch(key):
                return self._route(key, lane, LaneRoute(
                    slot=0, address=address, port=port, fail_closed=fail_closed,
                    source=source, server=server))

    def _route(self, key: str, lane: str, wanted: LaneRoute) -> LaneRoute:
        """`route` with the key's lock held and its admin session open."""
        router = self.router
        table = self.table(key)
        current = table.routes.get(lane)
        route = wanted.model_copy(update={
            "slot": table.free_slot() if current is None else current.slot,
            "created_at": current.created_at if current else wanted.created_at})
        address, port, fail_closed = route.address, route.port, route.fail_closed
        if current is not None and current.fail_closed != fail_closed:
            raise ValueError(f"lane {lane} is routed on {key} with fail_closed="
                             f"{current.fail_closed}; remove its route before changing that")
        server = f"{slot_backend(route)}/{slot_server(route.slot)}"
        self._checked(key, f"set server {server} addr {address} port {port}", _ADDRESS_OK)
        if router._uses_health_checks(key):
            self._checked(key, f"enable health {server}")
        self._checked(key, f"enable server {server}")
        lanes_map = map_path(router.dir.absolute(), key)
        if current is None:
            # A retry after an attempt that mapped the lane but died before recording it:
            # `add map` would add a second entry, so clear any first.
            self._checked(key, f"del map {lanes_map} {lane}", NOT_MAPPED_OK)
            self._checked(key, f"add map {lanes_map} {lane} {route.map_value()}")
        else:
            self._checked(key, f"set map {lanes_map} {lane} {route.map_value()}")
        table.routes[lane] = route
        write_table(router.dir, key, table)
        router._sync_config(key)
        return route

    def unroute(self, key: str, lane: str) -> bool:
        """Stop routing ``lane`` on ``key`` (its keyed requests go to the baseline); True when
        it was routed. A load balancer that is gone, or a lane not routed, is fine."""
        router = self.router
        with router._lock(key):
            table = self.table(key)
            route = table.routes.pop(lane, None)
            if route is None:
                return False
            if router.is_running(key):
                with router._batch(key):
                    lanes_map = map_path(router.dir.absolute(), key)
                    self._checked(key, f"del map {lanes_map} {lane}", NOT_MAPPED_OK)
                    self._checked(key, f"disable server {slot_backend(route)}/"
                                       f"{slot_server(route.slot)}")
            if router.frontend_port(key) is not None:
                write_table(router.dir, key, table)
                router._sync_config(key)
            return True

    def _checked(self, key: str, command: str, ok: tuple[str, ...] = ("",)) -> str:
        try:
            return self.router._command(key, command, ok)
        except HaproxyError as refused:
            if "No such backend" in (refused.answer or "") or \
                    "No such server" in (refused.answer or ""):
                # Retrying cannot help: only a restart gives the daemon the lane slots.
                raise PermanentRuntimeError(
                    f"the load balancer of {key} runs a config without lane routing (started "
                    "by an older Slipway): restart its daemon (its servers come back from "
                    "their record) and create the lane again") from refused
            raise

