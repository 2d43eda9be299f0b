"""The janitor deletes only what is surely dead: gone on two sweeps, never on an outage,
never a lane younger than its TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from integrations.haproxy.router import HaproxyRouter
from lanes.janitor import LaneJanitor, Liveness

NOW = datetime.now(UTC)


class NamespacesOnOneCluster:
    """The two calls the janitor makes of a Kubernetes lane target, over a dict."""

    cluster = "k8s"

    def __init__(self, created: dict[str, datetime | None]) -> None:
        self.created = created
        self.deleted: list[str] = []

    def lane_namespaces_created(self) -> dict[str, datetime | None]:
        return dict(self.created)

    def delete_namespace(self, detail: dict[str, Any]) -> None:
        self.deleted.append(detail["namespace"])
        self.created.pop(detail["namespace"])


def janitor(tmp_path: Path, target: NamespacesOnOneCluster,
            min_age: timedelta = timedelta(0)) -> LaneJanitor:
    return LaneJanitor([], HaproxyRouter(tmp_path / "lb"), [target],  # type: ignore[list-item]
                       min_age=min_age)


def test_gone_twice_is_removed_unknown_never(tmp_path: Path) -> None:
    target = NamespacesOnOneCluster({"gone": NOW - timedelta(days=9),
                                     "outage": NOW - timedelta(days=9),
                                     "live": NOW - timedelta(days=9)})
    states = {"gone": Liveness.GONE, "outage": Liveness.UNKNOWN, "live": Liveness.ALIVE}
    sweeper = janitor(tmp_path, target)
    assert sweeper.sweep(states.__getitem__) == {}  # a suspect, not yet removed
    assert sweeper.sweep(states.__getitem__) == {"gone": ["namespace gone@k8s"]}
    for _ in range(3):
        assert sweeper.sweep(states.__getitem__) == {}
    assert target.deleted == ["gone"]


def test_a_lane_seen_alive_again_is_forgiven(tmp_path: Path) -> None:
    target = NamespacesOnOneCluster({"flaky": NOW - timedelta(days=9)})
    sweeper = janitor(tmp_path, target)
    assert sweeper.sweep(lambda _lane: Liveness.GONE) == {}
    assert sweeper.sweep(lambda _lane: Liveness.ALIVE) == {}
    assert sweeper.sweep(lambda _lane: Liveness.GONE) == {}  # a suspect again, from scratch
    assert target.deleted == []


def test_a_lane_younger_than_its_ttl_is_never_swept(tmp_path: Path) -> None:
    target = NamespacesOnOneCluster({"young": NOW - timedelta(hours=1),
                                     "old": NOW - timedelta(days=7)})
    sweeper = janitor(tmp_path, target, min_age=timedelta(days=6))
    for _ in range(3):
        removed = sweeper.sweep(lambda _lane: Liveness.GONE)
    assert target.deleted == ["old"] and "young" not in removed
