"""Load balancers reconciled from what runs: a dead HAProxy comes back without a release.

HAProxy keeps its runtime changes in memory only. When a daemon dies (killed, host
rebooted, `slipway down --applications`) the environment stops serving, and its next release
would start an empty backend where the canary takes all traffic. The worker therefore runs
this reconciler at start and every few seconds: every environment with a config, or with a
record in the router's intent store, gets its daemon back, started with the servers, weights
and drains the router recorded already in its config (so it serves from its first accepted
connection), at the addresses their containers answer on now (a container restarted by the
engine gets a new host port). With the catalogue as the intent store, a replacement
load-balancer host (a fresh state directory) rebuilds every config and daemon from it.

Without a runtime (a fleet's load-balancer host cannot see the other hosts' engines) servers
are restored at their recorded addresses; the release that moves a replica records its new
one.

A daemon that runs is adopted, never restarted: `slipway down` leaves the load balancers
serving, and the worker of the next `slipway up` finds them running and sends them nothing
unless they differ from the record.

It composes two systems (the Docker runtime and HAProxy), which is why it sits beside them
rather than inside either package.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from dataclasses import dataclass, field

from integrations.docker.runtime import DockerRuntime
from integrations.errors import ClusterUnavailableError
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyRouter

log = logging.getLogger(__name__)


@dataclass
class Repair:
    """What one pass changed for one environment key."""

    key: str
    restarted: bool = False
    servers: list[str] = field(default_factory=list)


class LoadBalancerReconciler:
    """Restarts dead HAProxy daemons and puts their recorded servers back."""

    def __init__(self, router: HaproxyRouter, runtime: DockerRuntime | None = None) -> None:
        """``runtime``: the engines to ask where replicas answer now; None: as recorded."""
        self.router = router
        self.runtime = runtime

    def reconcile(self, key: str) -> Repair:
        """One environment: daemon alive, recorded servers at their live addresses.

        The engine is asked first, so a restarted daemon starts with its servers where their
        replicas answer now; an engine that cannot be asked does not keep a dead load
        balancer down: it starts from the record (the error is raised after).
        """
        unavailable: Exception | None = None
        live: dict[str, tuple[str, int]] | None = None
        if self.runtime is not None:
            try:
                live = {instance.name: (instance.address, instance.port)
                        for instance in self.runtime.instances(key, port=None)}
            except Exception as error:  # raised again below, once HAProxy runs
                unavailable = error
        repair = Repair(key, restarted=self.router.restart_if_dead(key, live))
        if self.router.frontend_port(key) is None:
            return repair  # no config here, no frontend recorded: nothing can run
        if unavailable is not None:
            if repair.restarted:
                log.info("load balancer of %s restarted from its record", key)
            raise unavailable
        repair.servers = self.router.restore(key, live) + self._follow_lanes(key)
        self.router.sync_config(key)  # a config from before servers were written into it
        return repair

    def _follow_lanes(self, key: str) -> list[str]:
        """Move each lane route of ``key`` to where its lane instance answers now (a
        container the engine restarted has a new host port); the routes that moved."""
        if self.runtime is None:
            return []
        lanes = LaneRouter(self.router)
        moved = []
        for lane, route in lanes.table(key).routes.items():
            if not route.source or not route.server:
                continue
            now = {instance.name: (instance.address, instance.port)
                   for instance in self.runtime.instances(route.source, port=None)}
            where = now.get(route.server)
            if where is not None and where != (route.address, route.port):
                lanes.route(key, lane, *where, fail_closed=route.fail_closed,
                            source=route.source, server=route.server)
                moved.append(f"lane {lane}")
        return moved

    def keys(self) -> list[str]:
        """Every environment of this host's configs and of the intent store; this host's
        configs alone while the store cannot be asked (a dead daemon still comes back)."""
        try:
            return self.router.known_keys()
        except Exception:  # logged; the store is asked again at the next pass
            log.warning("the load balancers' intent store cannot be asked: reconciling "
                        "this host's configs only", exc_info=True)
            return self.router.local_keys()

    def reconcile_all(self) -> list[Repair]:
        """Every known environment; one failing key does not stop the others."""
        repairs: list[Repair] = []
        for key in self.keys():
            try:
                repair = self.reconcile(key)
            except ClusterUnavailableError as error:  # an engine restart: one line, no trace
                log.warning("reconciling the load balancer of %s waits: %s", key, error)
                continue
            except Exception:  # logged and retried on the next pass
                log.warning("reconciling the load balancer of %s failed", key, exc_info=True)
                continue
            if repair.restarted or repair.servers:
                log.info("load balancer of %s reconciled: %s%s", key,
                         "restarted, " if repair.restarted else "",
                         f"servers {', '.join(repair.servers)}" if repair.servers
                         else "no server changed")
                repairs.append(repair)
        return repairs

    def wait_for_exit(self, timeout: float) -> bool:
        """Block until a running load balancer exits, or ``timeout`` seconds pass; True when
        one exited. A loop that waits here instead of sleeping between passes restarts a
        killed HAProxy within milliseconds, not at the next interval: fewer connections
        refused while nothing listens. Watches each daemon's pidfd (Linux ≥ 5.3); without
        pidfds it just sleeps."""
        fds: list[int] = []
        try:
            for key in self.keys():
                pid = self.router.running_pid(key)
                if pid is None:
                    continue  # dead already: the next pass restarts it (or logs why not)
                try:
                    fds.append(os.pidfd_open(pid))
                except ProcessLookupError:
                    return True  # exited between the check and the watch
                except OSError:
                    continue  # no pidfd support: the interval catches it
            if not fds:
                time.sleep(timeout)
                return False
            poller = select.poll()
            for fd in fds:
                poller.register(fd, select.POLLIN)
            return bool(poller.poll(max(timeout, 0.0) * 1000))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
