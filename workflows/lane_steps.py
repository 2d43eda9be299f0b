"""The lane's building blocks that need no workflow state: resource keys, timeouts, the push
deploy's activity sequence. Kept apart so ``swimlane`` reads as the lane's lifecycle.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.catalogue import CatalogueActivities
    from schemas.lanes import (
        DEPLOY_LANE_BUILD,
        LaneDeployInput,
        LanePushInput,
        LaneStage,
        LedgerEntry,
        ResourceKind,
    )
    from schemas.models import BuildInput, ImageSpec, RecordBuildInput
    from workflows.policies import HEARTBEAT_TIMEOUT, QUICK, RETRY, UNTIL_DONE, build_queue

__all__ = ["GONE", "HEARTBEAT_TIMEOUT", "QUICK", "RESOURCE_TIMEOUT", "RETRY", "UNTIL_DONE",
           "deploy_push", "resource_key"]

RESOURCE_TIMEOUT = timedelta(minutes=10)  # a deployment waits until the app is ready
BUILD_TIMEOUT = timedelta(minutes=30)
# Stages in which the lane no longer takes renewals or app changes, only a delete.
GONE = (LaneStage.DELETING, LaneStage.DELETED, LaneStage.FAILED, LaneStage.TEARDOWN_FAILED)


def resource_key(kind: ResourceKind, lane: str, app: str = "") -> str:
    """The name of a lane resource in its own system, derived from the lane name only."""
    keys = {
        ResourceKind.NAMESPACE: lane,
        ResourceKind.MESSAGES: lane,
        ResourceKind.BRANCH: f"feature/{lane}",
        ResourceKind.CI_JOB: f"{lane}/{app}",
        ResourceKind.CONFIG: f"{lane}/{app}",
        ResourceKind.DNS: f"{app}.{lane}",
        ResourceKind.WEBHOOK: f"{app}@{lane}",
        ResourceKind.DEPLOYMENT: f"{app}@{lane}",
    }
    return keys[kind]


async def deploy_push(lane: str, current: LedgerEntry, data: LanePushInput, label: str,
                      lane_job: str) -> tuple[ImageSpec, LedgerEntry]:
    """Build the pushed commit, record the build, swap it into the lane's deployment entry."""
    this_run = workflow.info().workflow_id
    image: ImageSpec = await workflow.execute_activity_method(
        BuildActivities.build_image,
        BuildInput(app=data.app, source=data.source, ref=data.sha,
                   version_label=label, workflow_id=this_run, jenkins_job=lane_job),
        start_to_close_timeout=BUILD_TIMEOUT, heartbeat_timeout=HEARTBEAT_TIMEOUT,
        task_queue=build_queue(), retry_policy=RETRY, summary=f"build {data.app}:{label}")
    await workflow.execute_activity_method(
        CatalogueActivities.record_build,
        RecordBuildInput(app=data.app, ref=data.sha, version_label=label,
                         image=image, workflow_id=this_run),
        start_to_close_timeout=QUICK, retry_policy=RETRY, summary="record the build")
    deployed: LedgerEntry = await workflow.execute_activity(
        DEPLOY_LANE_BUILD, LaneDeployInput(lane=lane, entry=current, image=image.run_ref),
        result_type=LedgerEntry, start_to_close_timeout=RESOURCE_TIMEOUT,
        heartbeat_timeout=HEARTBEAT_TIMEOUT, retry_policy=RETRY,
        summary=f"deploy {data.app}:{label} into the lane")
    return image, deployed
