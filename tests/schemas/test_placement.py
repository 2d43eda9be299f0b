"""schemas/placement.py: replicas spread, capacity respected, what runs stays, a recorded
placement preferred."""

from __future__ import annotations

import pytest

from schemas.placement import NoRoom, assign, place_names

HOSTS = [("n1", 0, False), ("n2", 0, False), ("n3", 0, False)]


def test_replicas_spread_over_the_hosts_one_each_while_another_has_room() -> None:
    share = assign(HOSTS, {}, {}, {}, 6)
    assert {name: len(indexes) for name, indexes in share.items()} == {"n1": 2, "n2": 2,
                                                                       "n3": 2}
    assert sorted(i for indexes in share.values() for i in indexes) == list(range(6))


def test_what_runs_stays_where_it_is_and_only_the_missing_are_placed() -> None:
    share = assign(HOSTS, {"n1": [0, 1, 2], "n2": [3]}, {}, {}, 5)
    assert share == {"n1": [0, 1, 2], "n2": [3], "n3": [4]}


def test_surplus_indexes_and_an_index_found_twice_leave() -> None:
    # Scaling 4 → 2: indexes 2 and 3 go; index 1 on n2 again is a duplicate of n1's.
    share = assign(HOSTS, {"n1": [0, 1, 3], "n2": [1, 2]}, {}, {}, 2)
    assert share == {"n1": [0, 1], "n2": [], "n3": []}


def test_a_cordoned_host_keeps_what_it_runs_and_gets_nothing_new() -> None:
    hosts = [("n1", 0, False), ("n2", 0, True), ("n3", 0, False)]
    share = assign(hosts, {"n2": [0]}, {}, {}, 4)
    assert share["n2"] == [0]
    assert len(share["n1"]) + len(share["n3"]) == 3
    with pytest.raises(NoRoom, match="every host is cordoned"):
        assign([("n1", 0, True)], {}, {}, {}, 1)


def test_capacity_counts_every_replica_of_the_stack_on_the_host() -> None:
    hosts = [("n1", 2, False), ("n2", 3, False)]
    share = assign(hosts, {}, {}, {"n1": 2, "n2": 1}, 2)
    assert share == {"n1": [], "n2": [0, 1]}
    with pytest.raises(NoRoom, match=r"no host has room for 1 more replica\(s\): n1 2/2, n2 3/3"):
        assign(hosts, {}, {}, {"n1": 2, "n2": 1}, 3)


def test_a_recorded_placement_is_preferred_over_the_spread() -> None:
    # Baseline 1 ran 3 + 3 on n1 and n2: a rollback puts it back there, not 2 + 2 + 2.
    share = assign(HOSTS, {}, {"n2": 3, "n3": 3}, {}, 6, prefer={"n1": 3, "n2": 3})
    assert {name: len(indexes) for name, indexes in share.items()} == {"n1": 3, "n2": 3,
                                                                       "n3": 0}


def test_the_other_versions_of_the_environment_break_ties() -> None:
    assert place_names(["n1", "n2"], {}, 1, {}, {"n1": 2}, {}) == ["n2"]
