"""Embedded `TrafficRouter`: one HAProxy process per environment, driven over its runtime API.

Each environment key (for example ``shop-prod-local``) gets its own HAProxy daemon with one
frontend and one backend ``be`` that starts without servers. Instances are added, weighted,
drained and removed through the admin socket (HAProxy 2.6 dynamic servers), so neither adding
an environment nor changing its instances ever needs a reload.

The daemons themselves (files, config, start, stop) are managed by
:class:`~integrations.haproxy.process.HaproxyProcesses`; this class adds the runtime API.
The commands of one change (several servers added and enabled, weighed, drained, deleted) go
over one admin connection, each answer checked. Every change is recorded (``intent``, once
per change) and written into the daemon's config at once, so a daemon started again holds
the servers, weights and drains it had.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping

from integrations.haproxy.common import (
    BACKEND,
    HaproxyError,
    LbServer,
    _check_address,
    _check_server,
    _check_weight,
    _lb_servers,
    _parse_stat,
)
from integrations.haproxy.intent import ServerIntent
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
        with self._batch(key):
            state = self._command(key, f"show servers state {BACKEND}", ok=("1\n", "1"))
            stats = self._command(key, "show stat -1 4 -1", ok=("# pxname",))
        return _lb_servers(state, _parse_stat(stats))

    def _states(self, key: str) -> dict[str, LbServer]:
        """The backend's servers by name, from `show servers state` alone (no session
        counts): what a change needs to know of them."""
        state = self._command(key, f"show servers state {BACKEND}", ok=("1\n", "1"))
        return {server.name: server for server in _lb_servers(state, {})}

    def server_names(self, key: str) -> list[str]:
        """Names of the backend's servers (one command: no states or session counts)."""
        self._check_key(key)
        return list(self._states(key))

    def server_stats(self, key: str) -> dict[str, dict[str, str]]:
        """`show stat` of the backend's servers: {server name: {column: value}}."""
        self._check_key(key)
        return _parse_stat(self._command(key, "show stat -1 4 -1", ok=("# pxname",)))

    def add_server(self, key: str, name: str, address: str, port: int, weight: int = 100) -> None:
        """Ensure server ``name`` at address:port takes traffic with ``weight``; idempotent.

        An existing server of that name with another address or port is replaced.
        """
        self.add_servers(key, {name: (address, port)}, weight)

    def add_servers(self, key: str, servers: Mapping[str, tuple[str, int]],
                    weight: int = 100) -> None:
        """`add_server` for every ``name: (address, port)``: one admin connection, one record
        (of what was done, also when a command is refused half-way)."""
        for name, (address, _port) in servers.items():
            _check_server(name)
            _check_address(address)
        _check_weight(weight)
        if not servers:
            return
        changes: dict[str, ServerIntent | None] = {}
        with self._lock(key), self._batch(key):
            current = self._states(key)
            try:
                for name, (address, port) in servers.items():
                    changes[name] = self._add(key, name, address, port, weight,
                                              current.get(name))
            finally:
                self._record(key, changes)

    def _add(self, key: str, name: str, address: str, port: int, weight: int,
             current: LbServer | None, drain: bool = False) -> ServerIntent:
        """`add_server` with the key's lock held; ``current``: the server as it runs now.
        ``drain``: a new server comes in draining (restored), never taking a new request.
        Returns what to record."""
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
        elif not drain and current.admin_state == "ready" and current.weight == weight:
            # Already in rotation as asked (a step's instances include the previous step's).
            return ServerIntent(address=address, port=port, weight=weight)
        else:
            self._command(key, f"set weight {BACKEND}/{name} {weight}")
            # Converge: a re-added server is meant to take traffic, even if drained before.
            self._command(key, f"set server {BACKEND}/{name} state ready")
        # Dynamic servers are created in maintenance mode; `state drain` leaves it too.
        self._command(key, f"set server {BACKEND}/{name} state drain" if drain
                      else f"enable server {BACKEND}/{name}")
        return ServerIntent(address=address, port=port, weight=weight,
                            state="drain" if drain else "ready")

    def set_weight(self, key: str, name: str, weight: int) -> None:
        """Set the user weight (0–256); 0 stops new traffic without draining."""
        self.set_weights(key, {name: weight})

    def set_weights(self, key: str, weights: Mapping[str, int]) -> None:
        """`set_weight` for every ``name: weight``, over one admin connection."""
        for name, weight in weights.items():
            _check_server(name)
            _check_weight(weight)
        self._each(key, weights, lambda name: f"set weight {BACKEND}/{name} {weights[name]}",
                   lambda name: {"weight": weights[name]})

    def drain(self, key: str, name: str) -> None:
        """Stop sending new requests to ``name``; requests in flight complete."""
        self.drain_servers(key, [name])

    def drain_servers(self, key: str, names: Iterable[str]) -> None:
        """`drain` every server of ``names``, over one admin connection."""
        names = list(names)
        for name in names:
            _check_server(name)
        self._each(key, names, lambda name: f"set server {BACKEND}/{name} state drain",
                   lambda _name: {"state": "drain"})

    def _each(self, key: str, names: Iterable[str], command: Callable[[str], str],
              recorded: Callable[[str], dict[str, object]]) -> None:
        """One silent command per server over one connection, then the record updated for
        the servers whose command went through."""
        names = list(names)
        if not names:
            return
        done: list[str] = []
        with self._lock(key), self._batch(key):
            try:
                for name in names:
                    self._command(key, command(name))
                    done.append(name)
            finally:
                self._update(key, {name: recorded(name) for name in done})

    def wait_idle(self, key: str, name: str, timeout: float, poll: float = 0.2) -> bool:
        """Wait until ``name`` has no current or queued sessions; False on timeout.

        An absent server has nothing in flight, so it counts as idle.
        """
        return not self.wait_idle_servers(key, [name], timeout, poll)

    def wait_idle_servers(self, key: str, names: Iterable[str], timeout: float,
                          poll: float = 0.2,
                          idle: Callable[[str], None] | None = None) -> list[str]:
        """Wait until none of ``names`` has current or queued sessions, at most ``timeout``
        seconds; return those still busy then (empty: all idle). One `show stat` per poll
        for all of them (an absent server is idle); ``idle`` is told each name as it becomes
        idle."""
        waiting = list(names)
        for name in waiting:
            _check_server(name)
        deadline = time.monotonic() + timeout
        while waiting:
            busy = {name for name, row in self.server_stats(key).items()
                    if int(row.get("scur") or 0) + int(row.get("qcur") or 0) > 0}
            for name in [name for name in waiting if name not in busy]:
                waiting.remove(name)
                if idle:
                    idle(name)
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))
        return waiting

    def remove_server(self, key: str, name: str, timeout: float = 10.0) -> None:
        """Disable and delete ``name``; an absent server is fine (idempotent).

        HAProxy refuses to delete a server that still has connections: drain and
        `wait_idle` first; this waits at most ``timeout`` seconds for them to end.
        """
        self.remove_servers(key, [name], timeout)

    def remove_servers(self, key: str, names: Iterable[str], timeout: float = 10.0) -> None:
        """`remove_server` for every server of ``names`` (each waited for at most
        ``timeout`` seconds), over one admin connection, one record."""
        names = list(names)
        for name in names:
            _check_server(name)
        if not names:
            return
        removed: dict[str, ServerIntent | None] = {}
        with self._lock(key), self._batch(key):
            try:
                for name in names:
                    self._delete(key, name, timeout)
                    removed[name] = None
            finally:
                self._record(key, removed)

    def _delete(self, key: str, name: str, timeout: float) -> None:
        """Disable and delete ``name`` (absent is fine); the caller records it."""
        disabled = self._send(key, f"disable server {BACKEND}/{name}").strip()
        if disabled == "No such server.":
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
                return
            # "still has connections attached" is transient: in-flight requests are ending.
            if "connection" not in answer.lower() or time.monotonic() >= deadline:
                raise HaproxyError(f"HAProxy for {key} refused a command", command, answer)
            time.sleep(0.1)

    # ------------------------------------------------------------ intent (durable copy)

    def _record(self, key: str, changes: Mapping[str, ServerIntent | None]) -> None:
        """Write the servers' intent (None: removed) in one go, and the config a restart
        starts from. Called with the key's lock held."""
        if not changes:
            return
        recorded = self.intended(key)
        servers = dict(recorded)
        for name, entry in changes.items():
            if entry is None:
                servers.pop(name, None)
            else:
                servers[name] = entry
        if servers != recorded:
            self.intent.write(key, servers)
        self._sync_config(key, servers)

    def _update(self, key: str, changes: Mapping[str, dict[str, object]]) -> None:
        """Change recorded fields of recorded servers (others are left unrecorded)."""
        recorded = self.intended(key)
        self._record(key, {name: recorded[name].model_copy(update=fields)
                           for name, fields in changes.items() if name in recorded})

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
        None: every recorded server at its recorded address.
        A daemon that runs is adopted as it serves (after `slipway down`/`up`, or found by a
        worker that starts): only a recorded server it lacks, or that answers elsewhere now,
        is (re)added, and a recorded drain it lacks is set. That last one is what a daemon
        just started from its config needs: the config gives a draining server weight 0 (no
        new requests either way); its drain state and recorded weight come back here.
        Nothing here ever puts a server back into rotation on its own (a server the router is
        removing is in maintenance until it is gone).
        """
        changed: list[str] = []
        changes: dict[str, ServerIntent | None] = {}
        with self._lock(key), self._batch(key):
            current = self._states(key)
            try:
                for name, entry in self.intended(key).items():
                    if live is not None and name not in live:
                        continue
                    address, port = live[name] if live is not None else (entry.address,
                                                                          entry.port)
                    if self._converge(key, name, entry, address, port, current.get(name),
                                      changes):
                        changed.append(name)
            finally:
                self._record(key, changes)
        return changed

    def _converge(self, key: str, name: str, entry: ServerIntent, address: str, port: int,
                  server: LbServer | None, changes: dict[str, ServerIntent | None]) -> bool:
        """One server to its record at address:port; True when a command was needed.
        A server (re)added goes into ``changes``, to be recorded at its address."""
        if server is None or (server.address, server.port) != (address, port):
            changes[name] = self._add(key, name, address, port, entry.weight, server,
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
