"""Where new replicas of a version go among a cluster's hosts: a pure function of counts.

Shared by the Docker runtime (one process reaching every engine) and by a release's workflow
(hosts reached through their agents), so both place the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class NoRoom(ValueError):
    """Every host is at its capacity."""


def place_names(hosts: Sequence[str], capacity: Mapping[str, int], replicas: int,
                of_version: Mapping[str, int], of_env: Mapping[str, int],
                load: Mapping[str, int], prefer: Mapping[str, int] | None = None) -> list[str]:
    """The host of each of ``replicas`` new replicas of a version, one at a time.

    Among the hosts with room (fewer of this stack's replicas than their capacity, 0 = no
    limit), a host ``prefer`` still asks for comes first (a rollback puts a version back where
    its baseline had it: ``prefer`` counts that version's replicas per host); then the one
    with the fewest replicas of the version, then of the environment, then listed first. So
    no two replicas of a version share a host while another has room.

    ``of_version``, ``of_env`` and ``load`` count replicas per host name, before these."""
    version, env, used = dict(of_version), dict(of_env), dict(load)
    wanted = {name: count - version.get(name, 0) for name, count in (prefer or {}).items()}
    chosen: list[str] = []
    for _ in range(replicas):
        room = [name for name in hosts
                if not capacity.get(name) or used.get(name, 0) < capacity[name]]
        if not room:
            full = ", ".join(f"{name} {used.get(name, 0)}/{capacity.get(name, 0)}"
                             for name in hosts)
            raise NoRoom(f"no host has room for {replicas - len(chosen)} more "
                         f"replica(s): {full}; add hosts or capacity, or run fewer")
        best = min(room, key=lambda name: (wanted.get(name, 0) <= 0, version.get(name, 0),
                                           env.get(name, 0), list(hosts).index(name)))
        for counts in (version, env, used):
            counts[best] = counts.get(best, 0) + 1
        wanted[best] = wanted.get(best, 0) - 1
        chosen.append(best)
    return chosen


def assign(hosts: Sequence[tuple[str, int, bool]], kept: Mapping[str, Sequence[int]],
           env_others: Mapping[str, int], load: Mapping[str, int], replicas: int,
           prefer: Mapping[str, int] | None = None) -> dict[str, list[int]]:
    """Replica indexes ``0..replicas-1`` of a version by host: those already running where
    they are (``kept``, by host; an index found twice stays on the first host listed), the
    missing ones placed by :func:`place_names` on the hosts not cordoned.

    ``hosts`` are (name, capacity, cordoned) in placement order; every host gets an entry
    (empty: none of the version runs there afterwards)."""
    result: dict[str, list[int]] = {name: [] for name, _capacity, _cordoned in hosts}
    taken: set[int] = set()
    for name in result:
        for index in sorted(kept.get(name, ())):
            if index < replicas and index not in taken:
                result[name].append(index)
                taken.add(index)
    missing = [index for index in range(replicas) if index not in taken]
    if missing:
        open_hosts = [name for name, _capacity, cordoned in hosts if not cordoned]
        if not open_hosts:
            raise NoRoom("every host is cordoned: `slipway host uncordon HOST` one of them, "
                         "or add hosts")
        of_version = {name: len(indexes) for name, indexes in result.items()}
        of_env = {name: of_version[name] + env_others.get(name, 0) for name in result}
        names = place_names(open_hosts, {name: capacity for name, capacity, _c in hosts},
                            len(missing), of_version, of_env, load, prefer)
        for index, name in zip(missing, names, strict=True):
            result[name].append(index)
    return {name: sorted(indexes) for name, indexes in result.items()}
