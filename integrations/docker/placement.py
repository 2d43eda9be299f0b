"""Where replicas of a version go among a cluster's Docker hosts, and what they are called.

Pure functions of what runs where: the runtime asks the engines, these decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from docker.models.containers import Container

from integrations.errors import PermanentRuntimeError
from schemas.settings import DockerHost

Placed = tuple[DockerHost, Container]


class NoRoomError(PermanentRuntimeError):
    """Every host of the cluster is at its capacity: add hosts or capacity, or fewer
    replicas."""


def container_name(env_key: str, version: int, index: int, stack: str = "") -> str:
    """``slipway-<stack>-<env>-v<version>-<index>``: with the stack's id, two stacks sharing
    an engine (a demo and a test suite, two state directories) never take each other's
    names. What a stack finds again, it finds by its labels, not by name."""
    return f"slipway-{stack + '-' if stack else ''}{env_key}-v{version}-{index}"


def place(hosts: Sequence[DockerHost], replicas: int, of_version: Mapping[str, int],
          of_env: Mapping[str, int], load: Mapping[str, int]) -> list[DockerHost]:
    """The hosts of ``replicas`` new replicas of a version, one at a time: among the hosts
    with room (fewer of this stack's replicas than their capacity, 0 = no limit), the one
    with the fewest replicas of the version, then of the environment, then listed first.
    So no two replicas of a version share a host while another has room.

    ``of_version``, ``of_env`` and ``load`` count replicas per host name, before these."""
    version, env, used = dict(of_version), dict(of_env), dict(load)
    chosen: list[DockerHost] = []
    for _ in range(replicas):
        room = [host for host in hosts
                if not host.capacity or used.get(host.name, 0) < host.capacity]
        if not room:
            full = ", ".join(f"{host.name} {used.get(host.name, 0)}/{host.capacity}"
                             for host in hosts)
            raise NoRoomError(f"no host has room for {replicas - len(chosen)} more "
                              f"replica(s): {full}; add hosts or capacity, or run fewer")
        best = min(room, key=lambda host: (version.get(host.name, 0), env.get(host.name, 0),
                                           hosts.index(host)))
        for counts in (version, env, used):
            counts[best.name] = counts.get(best.name, 0) + 1
        chosen.append(best)
    return chosen


def spread(placed: Iterable[Placed]) -> dict[str, int]:
    """Replicas per host name."""
    counts: dict[str, int] = {}
    for host, _container in placed:
        counts[host.name] = counts.get(host.name, 0) + 1
    return counts
