"""Where replicas of a version go among a cluster's Docker hosts, and what they are called.

Pure functions of what runs where: the runtime asks the engines, these decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from docker.models.containers import Container

from integrations.errors import PermanentRuntimeError
from schemas.placement import NoRoom, place_names
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
    """The hosts of ``replicas`` new replicas of a version (:func:`schemas.placement.place_names`:
    no two replicas of a version share a host while another has room, capacity respected)."""
    by_name = {host.name: host for host in hosts}
    try:
        names = place_names(list(by_name), {host.name: host.capacity for host in hosts},
                            replicas, of_version, of_env, load)
    except NoRoom as error:
        raise NoRoomError(str(error)) from None
    return [by_name[name] for name in names]


def spread(placed: Iterable[Placed]) -> dict[str, int]:
    """Replicas per host name."""
    counts: dict[str, int] = {}
    for host, _container in placed:
        counts[host.name] = counts.get(host.name, 0) + 1
    return counts
