"""Finding what lanes left behind: containers and load balancers of lanes with no workflow
on Docker, lane namespaces on Kubernetes.

No Temporal imports: the caller says which lanes are alive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import docker

from integrations.docker.runtime import LABEL_ENV, LABEL_STACK
from integrations.haproxy.lane_router import LaneRouter
from integrations.haproxy.router import HaproxyRouter
from lanes.target import LABEL_LANE

if TYPE_CHECKING:  # Docker-only installations never load the Kubernetes client
    from integrations.broker.redis_lanes import RedisLaneBroker
    from lanes.kubernetes_target import KubernetesLaneTarget


class Liveness(StrEnum):
    """What Temporal says of a lane's workflow."""

    ALIVE = "alive"  # running
    GONE = "gone"  # NOT_FOUND, or closed
    UNKNOWN = "unknown"  # Temporal did not answer (UNAVAILABLE, DEADLINE_EXCEEDED, ...)


class LaneJanitor:
    """Removes what dead lanes left: lane-labelled containers and their HAProxy frontends,
    their routes on the QA load balancers, their consumer groups on the message broker, and
    lane namespaces.

    Deleting a live lane's resources is the worst thing it can do, so a lane is swept only
    when its workflow was reported gone on two sweeps in a row (a suspect first, recorded in
    ``suspects``), never on an unanswered question, and never while its oldest resource is
    younger than ``min_age`` (the lane TTL: a lane that young may be starting).
    """

    def __init__(self, engines: list[str], router: HaproxyRouter,
                 kubernetes: list[KubernetesLaneTarget] | None = None,
                 min_age: timedelta = timedelta(0), suspects: Path | None = None,
                 stack: str = "", broker: RedisLaneBroker | None = None,
                 topics: list[str] | None = None) -> None:
        self.engines = engines
        self.router = router
        self.lanes = LaneRouter(router)
        self.broker = broker
        self.topics = list(topics or [])
        self.kubernetes = list(kubernetes or [])
        self.min_age = min_age
        # Only containers this stack started (labelled with its id) are ever swept.
        self.stack_filter = [LABEL_LANE, f"{LABEL_STACK}={stack}"]
        self.suspects_path = suspects or router.state_dir / "janitor" / "suspects.json"

    def _suspects(self) -> set[str]:
        try:
            return set(json.loads(self.suspects_path.read_text()))
        except (OSError, ValueError):
            return set()

    def _save_suspects(self, lanes: set[str]) -> None:
        self.suspects_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.suspects_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(lanes)))
        tmp.replace(self.suspects_path)

    def _containers_created(self) -> dict[str, datetime]:
        """Lane name → creation time of its oldest container, across every engine."""
        oldest: dict[str, datetime] = {}
        for engine in self.engines:
            client = docker.DockerClient(base_url=engine, timeout=60)
            for container in client.containers.list(all=True,
                                                   filters={"label": self.stack_filter}):
                created = _parse_time(container.attrs.get("Created", ""))
                lane = container.labels[LABEL_LANE]
                oldest[lane] = min(oldest.get(lane, created), created)
        return oldest

    def _doomed(self, lanes: dict[str, datetime | None], liveness: Callable[[str], Liveness],
                suspects: set[str], seen: set[str]) -> list[str]:
        """The lanes to sweep now; records this sweep's suspects in ``seen``."""
        now = datetime.now(UTC)
        doomed = []
        for lane, created in sorted(lanes.items()):
            if liveness(lane) != Liveness.GONE:
                continue
            seen.add(lane)
            old_enough = created is None or now - created >= self.min_age
            if lane in suspects and old_enough:
                doomed.append(lane)
        return doomed

    def lanes_with_resources(self) -> dict[str, list[str]]:
        """Lane name → environment keys of its containers, across every engine."""
        found: dict[str, set[str]] = {}
        for engine in self.engines:
            client = docker.DockerClient(base_url=engine, timeout=60)
            for container in client.containers.list(all=True,
                                                   filters={"label": self.stack_filter}):
                found.setdefault(container.labels[LABEL_LANE], set()).add(
                    container.labels.get(LABEL_ENV, ""))
        return {lane: sorted(keys) for lane, keys in found.items()}

    def sweep(self, liveness: Callable[[str], Liveness]) -> dict[str, list[str]]:
        """Remove the resources of every lane whose workflow is gone for a second sweep in a
        row and that is older than ``min_age``; return them."""
        suspects, seen = self._suspects(), set[str]()
        removed: dict[str, list[str]] = {}
        env_keys = self.lanes_with_resources()
        created: dict[str, datetime | None] = dict(self._containers_created())
        routes = self._routes_created(created)
        # Consumer groups carry no creation time: the workflow's liveness alone decides.
        broker_lanes = self.broker.lanes(self.topics) if self.broker and self.topics else set()
        for lane in broker_lanes:
            created.setdefault(lane, None)
        for lane in self._doomed(created, liveness, suspects, seen):
            # Routes first: the lane's keyed requests go to the baseline before it stops.
            for key in routes.get(lane, []):
                self.lanes.unroute(key, lane)
            if lane in broker_lanes and self.broker is not None:
                self.broker.forget_lane(lane, self.topics)
            for engine in self.engines:
                client = docker.DockerClient(base_url=engine, timeout=60)
                for container in client.containers.list(
                        all=True, filters={"label": [f"{LABEL_LANE}={lane}",
                                                     *self.stack_filter[1:]]}):
                    container.remove(force=True)
            for key in env_keys.get(lane, []):
                if key:
                    self.router.stop(key)
            removed[lane] = [*env_keys.get(lane, []),
                             *(f"route {lane}@{key}" for key in routes.get(lane, [])),
                             *([f"consumer groups of {lane}"] if lane in broker_lanes else [])]
        for target in self.kubernetes:
            namespaces = target.lane_namespaces_created()
            for lane in self._doomed(namespaces, liveness, suspects, seen):
                # Our label is on it (lane_namespaces checked): deleting takes its apps along.
                target.delete_namespace({"namespace": lane, "created": True})
                removed.setdefault(lane, []).append(f"namespace {lane}@{target.cluster}")
        # A lane swept is no suspect any more; one seen alive again is forgiven.
        self._save_suspects(seen - set(removed))
        return removed


    def _routes_created(self, created: dict[str, datetime | None]) -> dict[str, list[str]]:
        """Lane → QA load balancers routing it; adds each routed lane's oldest route time
        to ``created``."""
        routed: dict[str, list[str]] = {}
        for key in self.router.local_keys():
            for lane, route in self.lanes.table(key).routes.items():
                routed.setdefault(lane, []).append(key)
                known = created.get(lane)
                created[lane] = route.created_at if known is None else min(known,
                                                                          route.created_at)
        return routed


def _parse_time(text: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, as an aware datetime (now when unreadable)."""
    try:
        trimmed = re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00")
        return datetime.fromisoformat(trimmed)
    except ValueError:
        return datetime.now(UTC)
