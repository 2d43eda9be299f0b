"""Load balancers reconciled from what runs: a dead HAProxy comes back without a release.

HAProxy keeps its servers in memory only. When a daemon dies (killed, host rebooted, the
stack stopped and started) the environment stops serving, and its next release would start
an empty backend where the canary takes all traffic. The worker therefore runs this
reconciler at start and every few seconds: every environment with a config gets its daemon
back, with the servers and weights the router recorded, at the addresses their containers
answer on now (a container restarted by the engine gets a new host port).

It composes two systems (the Docker runtime and HAProxy), which is why it sits beside them
rather than inside either package.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from integrations.docker.runtime import DockerRuntime
from integrations.errors import ClusterUnavailableError
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

    def __init__(self, router: HaproxyRouter, runtime: DockerRuntime) -> None:
        self.router = router
        self.runtime = runtime

    def reconcile(self, key: str) -> Repair:
        """One environment: daemon alive, recorded servers at their live addresses."""
        repair = Repair(key, restarted=self.router.restart_if_dead(key))
        live = {instance.name: (instance.address, instance.port)
                for instance in self.runtime.instances(key, port=None)}
        repair.servers = self.router.restore(key, live)
        return repair

    def reconcile_all(self) -> list[Repair]:
        """Every known environment; one failing key does not stop the others."""
        repairs: list[Repair] = []
        for key in self.router.known_keys():
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
