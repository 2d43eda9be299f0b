"""Activities that create and remove a swimlane's resources, one ledger entry at a time."""

from __future__ import annotations

from temporalio import activity

from activities.support import heartbeating, permanent
from catalogue import lanes as lane_records
from integrations.errors import PermanentRuntimeError
from lanes.resources import LaneResources
from schemas.lanes import (
    CREATE_LANE_RESOURCE,
    DELETE_LANE_RESOURCE,
    DEPLOY_LANE_BUILD,
    RECORD_LANE,
    LaneDeployInput,
    LaneRecordInput,
    LaneResourceInput,
    LedgerEntry,
)


class LaneActivities:
    def __init__(self, resources: LaneResources) -> None:
        self.resources = resources

    @activity.defn(name=CREATE_LANE_RESOURCE)
    def create_lane_resource(self, data: LaneResourceInput) -> LedgerEntry:
        """Create (or adopt) one resource of a lane; the entry says how to remove it."""
        with heartbeating(f"creating {data.kind} {data.key}") as pulse, \
                permanent(PermanentRuntimeError, ValueError):
            return self.resources.create(data, pulse.progress)

    @activity.defn(name=DELETE_LANE_RESOURCE)
    def delete_lane_resource(self, entry: LedgerEntry) -> None:
        """Remove one ledger entry's resource; already gone is fine."""
        with heartbeating(f"deleting {entry.kind} {entry.key}"), \
                permanent(PermanentRuntimeError, ValueError):
            self.resources.delete(entry)

    @activity.defn(name=DEPLOY_LANE_BUILD)
    def deploy_lane_build(self, data: LaneDeployInput) -> LedgerEntry:
        """Swap a lane app to a freshly built image; the entry returned replaces the old one."""
        with heartbeating(f"deploying {data.image}") as pulse, \
                permanent(PermanentRuntimeError, ValueError):
            return self.resources.redeploy(data, pulse.progress)

    @activity.defn(name=RECORD_LANE)
    def record_lane(self, data: LaneRecordInput) -> None:
        """Keep the lane's catalogue row current (stage, apps, expiry)."""
        lane_records.record_lane(self.resources.store, data)
