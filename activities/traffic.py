"""Activities that steer traffic through the environment's router (HAProxy or a Service)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.support import heartbeating, permanent
from integrations.errors import PermanentRuntimeError
from integrations.protocols import TrafficRouter
from schemas.models import DrainInput, EnsureFrontendInput, ShiftInput, TrafficInput


class TrafficActivities:
    """Traffic activities; the cluster named in each input picks the router."""

    def __init__(self, routers: dict[str, TrafficRouter], default_cluster: str) -> None:
        self.routers = routers
        self.default_cluster = default_cluster

    def _router(self, cluster: str) -> TrafficRouter:
        try:
            return self.routers[cluster or self.default_cluster]
        except KeyError:
            raise ApplicationError(f"cluster {cluster!r} is not configured in SLIPWAY_CLUSTERS",
                                   type="ConfigurationError", non_retryable=True) from None

    @activity.defn
    def ensure_frontend(self, data: EnsureFrontendInput) -> None:
        """Make sure the environment's entry point exists (idempotent)."""
        with heartbeating(f"frontend on {data.lb_port}"), permanent(PermanentRuntimeError):
            self._router(data.cluster).ensure_frontend(data)

    @activity.defn
    def add_to_lb(self, data: TrafficInput) -> None:
        """Put instances in rotation at full weight (idempotent)."""
        with heartbeating("adding to rotation"), permanent(PermanentRuntimeError):
            self._router(data.cluster).add(data)

    @activity.defn
    def shift(self, data: ShiftInput) -> None:
        """A step's change of traffic in one activity: the new instances in rotation, then
        the old version drained down to ``keep`` (bounded by the drain timeout)."""
        with heartbeating(f"shifting to v{data.add.instances[0].version}"
                          if data.add.instances else "shifting") as pulse, \
                permanent(PermanentRuntimeError):
            router = self._router(data.add.cluster)
            router.add(data.add)
            if data.drain is not None:
                router.drain(data.drain, progress=pulse.progress)

    @activity.defn
    def drain(self, data: DrainInput) -> None:
        """Stop new requests to a version's replicas from index ``keep`` on, let in-flight
        requests finish (bounded by the drain timeout), then take those replicas out."""
        with heartbeating(f"draining v{data.version}") as pulse, \
                permanent(PermanentRuntimeError):
            self._router(data.cluster).drain(data, progress=pulse.progress)

    @activity.defn
    def remove_from_lb(self, data: DrainInput) -> None:
        """Take a version's replicas out of rotation at once (used when undoing a release)."""
        with heartbeating(f"taking v{data.version} out"), permanent(PermanentRuntimeError):
            self._router(data.cluster).remove(data)

    @activity.defn
    def remove_frontend(self, data: EnsureFrontendInput) -> None:
        """Remove the environment's entry point (HAProxy frontend, or its Service); already
        gone is fine. Only an environment's teardown calls it."""
        with heartbeating(f"removing the frontend on {data.lb_port}"), \
                permanent(PermanentRuntimeError):
            self._router(data.cluster).remove_frontend(data)
