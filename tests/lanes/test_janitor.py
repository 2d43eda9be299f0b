"""The janitor deletes only what is surely dead: gone on two sweeps, never on an outage,
never a lane younger than its TTL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from integrations.broker.redis_lanes import RedisLaneBroker
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyRouter
from lanes.janitor import LaneJanitor, Liveness
from schemas.lanes import MessagePolicy
from tests.integrations.haproxy.test_router import Backend, free_port
from tests.support.redis_server import RedisServer

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


@pytest.mark.integration
def test_dead_lanes_routes_and_consumer_groups_are_swept(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """A lane whose workflow is gone leaves a route on a QA load balancer (real HAProxy) and
    consumer groups on the broker (real Redis): both are swept, a live lane's are not."""
    router = HaproxyRouter(tmp_path / "lb")
    backend = Backend("lane")
    port = free_port()
    try:
        router.ensure_frontend("pay-test-local", port, health_path=None)
        lanes = LaneRouter(router)
        for lane in ("dead", "live"):
            lanes.route("pay-test-local", lane, "127.0.0.1", backend.port)
        with RedisLaneBroker(redis_server.url, redis_server.password) as broker:
            for lane in ("dead", "live"):
                broker.open_lane(lane, ["orders"], MessagePolicy.LANE_CONSUME)
            sweeper = LaneJanitor([], router, broker=broker, topics=["orders"])
            alive = {"dead": Liveness.GONE, "live": Liveness.ALIVE}
            assert sweeper.sweep(alive.__getitem__) == {}  # a suspect first
            assert sweeper.sweep(alive.__getitem__) == {
                "dead": ["route dead@pay-test-local", "consumer groups of dead"]}
            assert set(lanes.table("pay-test-local").routes) == {"live"}
            assert broker.lanes(["orders"]) == {"live"}
        keyed = httpx.get(f"http://127.0.0.1:{port}/", headers={"x-slipway-lane": "dead"},
                          timeout=5)
        assert keyed.status_code == 503  # no baseline here: the route is really gone
        assert httpx.get(f"http://127.0.0.1:{port}/", headers={"x-slipway-lane": "live"},
                         timeout=5).text == "lane"
    finally:
        router.stop("pay-test-local")
        backend.close()
