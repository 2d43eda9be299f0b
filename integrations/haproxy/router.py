"""Embedded `TrafficRouter`: one HAProxy process per environment, driven over its runtime API.

Each environment key (for example ``shop-prod-local``) gets its own HAProxy daemon with one
frontend and one backend ``be`` that starts without servers. Instances are added, weighted,
drained and removed through the admin socket (HAProxy 2.6 dynamic servers), so neither adding
an environment nor changing its instances ever needs a reload.

The daemons themselves (files, config, start, stop) are managed by
:class:`~integrations.haproxy.process.HaproxyProcesses`; this class adds the runtime API.
Every change is recorded (``intent``) and written into the daemon's config at once, so a
daemon started again holds the servers, weights and drains it had.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from integrations.haproxy.common import (
    _ADMIN_DRAIN_BITS,
    _ADMIN_MAINT_BITS,
    _OP_STATES,
    BACKEND,
    HaproxyError,
    LbServer,
    _check_address,
    _check_server,
    _check_weight,
    _parse_servers_state,
    _parse_stat,
)
from integrations.haproxy.intent import ServerIntent, write_intent
from integrations.haproxy.process import HEALTH_CHECK_OPTIONS, HaproxyProcesses


class HaproxyRouter(HaproxyProcesses):
    """Manage one HAProxy daemon per environment key and its servers over the admin socket."""

    # ------------------------------------------------------------ runtime API

    def _command(self, key: str, command: str, ok: tuple[str, ...] = ("",)) -> str:
        """Run ``command``; its stripped answer must start with one of ``ok`` ("" = silent)."""
        answer = self._send(key, command).strip()
        if any(answer == "" if prefix == "" else answer.startswith(prefix) for prefix in ok):
            return answer
        raise HaproxyError(f"HAProxy for {key} refused a command", command, answer)

    def servers(self, key: str) -> list[LbServer]:
        """The backend's servers with address, weight, states and current sessions."""
        self._check_key(key)
        state = self._command(key, f"show servers state {BACKEND}", ok=("1\n", "1"))
        stats = self._command(key, "show stat -1 4 -1", ok=("# pxname",))
        by_name = _parse_stat(stats)
        result = []
        for row in _parse_servers_state(state):
            name = row["srv_name"]
            admin = int(row["srv_admin_state"])
            draining = bool(admin & _ADMIN_DRAIN_BITS)
            if admin & _ADMIN_MAINT_BITS:
                admin_state = "maint"
            elif draining:
                admin_state = "drain"
            else:
                admin_state = "ready"
            stat = by_name.get(name, {})
            result.append(
                LbServer(
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
                )
            )
        return result

    def server_stats(self, key: str) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: {server name: {column: value}}."""
        self._check_key(key)
        return _parse_stat(self._command(key, "show stat -1 4 -1", ok=("# pxname",)))

    def _server(self, key: str, name: str) -> LbServer | None:
        return next((s for s in self.servers(key) if s.name == name), None)

    def add_server(self, key: str, name: str, address: str, port: int, weight: int = 100) -> None:
        """Ensure server ``name`` at address:port takes traffic with ``weight``; idempotent.

        An existing server of that name with another address or port is replaced.
        """
        _check_server(name)
        _check_address(address)
        _check_weight(weight)
        with self._lock(key):
            self._add(key, name, address, port, weight, self._server(key, name))

    def _add(self, key: str, name: str, address: str, port: int, weight: int,
             current: LbServer | None, drain: bool = False) -> None:
        """`add_server` with the key's lock held; ``current``: the server as it runs now.
        ``drain``: a new server comes in draining (restored), never taking a new request."""
        if current is not None and (current.address, current.port) != (address, port):
            self._delete(key, name, timeout=self.start_timeout)
            current = None
        if current is None:
            options = f" weight {weight}"
            health = self._uses_health_checks(key)
            if health:
                options += f" {HEALTH_CHECK_OPTIONS}"
            self._command(
                key,
                f"add server {BACKEND}/{name} {address}:{port}{options}",
                ok=("New server registered",),
            )
            if health:
                # Dynamic servers start with checks disabled even when declared.
                self._command(key, f"enable health {BACKEND}/{name}")
        else:
            self._command(key, f"set weight {BACKEND}/{name} {weight}")
            # Converge: a re-added server is meant to take traffic, even if drained before.
            self._command(key, f"set server {BACKEND}/{name} state ready")
        # Dynamic servers are created in maintenance mode; `state drain` leaves it too.
        self._command(key, f"set server {BACKEND}/{name} state drain" if drain
                      else f"enable server {BACKEND}/{name}")
        self._record(key, name, ServerIntent(address=address, port=port, weight=weight,
                                             state="drain" if drain else "ready"))

    def set_weight(self, key: str, name: str, weight: int) -> None:
        """Set the user weight (0–256); 0 stops new traffic without draining."""
        _check_server(name)
        _check_weight(weight)
        with self._lock(key):
            self._command(key, f"set weight {BACKEND}/{name} {weight}")
            self._update(key, name, weight=weight)

    def drain(self, key: str, name: str) -> None:
        """Stop sending new requests to ``name``; requests in flight complete."""
        _check_server(name)
        with self._lock(key):
            self._command(key, f"set server {BACKEND}/{name} state drain")
            self._update(key, name, state="drain")

    def wait_idle(self, key: str, name: str, timeout: float, poll: float = 0.2) -> bool:
        """Wait until ``name`` has no current or queued sessions; False on timeout.

        An absent server has nothing in flight, so it counts as idle.
        """
        _check_server(name)
        deadline = time.monotonic() + timeout
        while True:
            server = self._server(key, name)
            if server is None or server.current_sessions + server.queued == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))

    def remove_server(self, key: str, name: str, timeout: float = 10.0) -> None:
        """Disable and delete ``name``; an absent server is fine (idempotent).

        HAProxy refuses to delete a server that still has connections: drain and
        `wait_idle` first; this waits at most ``timeout`` seconds for them to end.
        """
        _check_server(name)
        with self._lock(key):
            self._delete(key, name, timeout)

    def _delete(self, key: str, name: str, timeout: float) -> None:
        disabled = self._send(key, f"disable server {BACKEND}/{name}").strip()
        if disabled == "No such server.":
            self._record(key, name, None)
            return
        if disabled:
            raise HaproxyError(
                f"HAProxy for {key} refused a command", f"disable server {BACKEND}/{name}", disabled
            )
        command = f"del server {BACKEND}/{name}"
        deadline = time.monotonic() + timeout
        while True:
            answer = self._send(key, command).strip()
            if answer.startswith("Server deleted") or answer == "No such server.":
                self._record(key, name, None)
                return
            # "still has connections attached" is transient: in-flight requests are ending.
            if "connection" not in answer.lower() or time.monotonic() >= deadline:
                raise HaproxyError(f"HAProxy for {key} refused a command", command, answer)
            time.sleep(0.1)

    # ------------------------------------------------------------ intent (durable copy)

    def _record(self, key: str, name: str, entry: ServerIntent | None) -> None:
        """Write one server's intent (None: removed) and the config a restart starts from.
        Called with the key's lock held."""
        servers = self.intended(key)
        if entry is None:
            if servers.pop(name, None) is None:
                return
        else:
            servers[name] = entry
        write_intent(self.intent_path(key), servers)
        self._sync_config(key)

    def _update(self, key: str, name: str, **changes: object) -> None:
        entry = self.intended(key).get(name)
        if entry is not None:
            self._record(key, name, entry.model_copy(update=changes))

    def ensure_frontend(self, key: str, bind_port: int,
                        health_path: str | None = "/healthz") -> bool:
        started = super().ensure_frontend(key, bind_port, health_path)
        if started:
            self.restore(key)
        return started

    def restore(self, key: str, live: Mapping[str, tuple[str, int]] | None = None) -> list[str]:
        """Bring the running backend in line with the recorded servers; return what changed.

        ``live`` maps server names to where their replicas answer now (a restarted container
        may have a new host port); a recorded server absent from it is left out of rotation
        (its replica is not running) but stays recorded, to come back with its replica.
        A daemon that runs is adopted as it serves (after `slipway down`/`up`, or found by a
        worker that starts): only a recorded server it lacks, or that answers elsewhere now,
        is (re)added, and a recorded drain it lacks is set. That last one is what a daemon
        just started from its config needs: the config gives a draining server weight 0 (no
        new requests either way); its drain state and recorded weight come back here.
        Nothing here ever puts a server back into rotation on its own (a server the router is
        removing is in maintenance until it is gone).
        """
        changed: list[str] = []
        with self._lock(key):
            current = {server.name: server for server in self.servers(key)}
            for name, entry in self.intended(key).items():
                if live is not None and name not in live:
                    continue
                address, port = live[name] if live is not None else (entry.address, entry.port)
                if self._converge(key, name, entry, address, port, current.get(name)):
                    changed.append(name)
        return changed

    def _converge(self, key: str, name: str, entry: ServerIntent, address: str, port: int,
                  server: LbServer | None) -> bool:
        """One server to its record at address:port; True when a command was needed."""
        if server is None or (server.address, server.port) != (address, port):
            self._add(key, name, address, port, entry.weight, server,
                      drain=entry.state == "drain")
            return True
        if entry.state != "drain" or server.admin_state == "maint":
            return False
        changed = False
        if not server.draining:
            # Before the weight: a draining server must never take new requests meanwhile.
            self._command(key, f"set server {BACKEND}/{name} state drain")
            changed = True
        if server.weight != entry.weight:
            self._command(key, f"set weight {BACKEND}/{name} {entry.weight}")
            changed = True
        return changed
