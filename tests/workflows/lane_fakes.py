"""Recorded fake activities of SwimlaneWorkflow: every create, delete, build and deploy is
noted, and a step can be made to fail or to block until the test lets it go."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

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
from schemas.models import BuildInput, ImageSpec, NotifyInput, RecordBuildInput

KINDS = ["branch", "ci_job", "config", "dns", "webhook", "deployment"]


@dataclass
class LaneWorld:
    """Fake resource activities: record every create/delete, fail or block on request."""

    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)  # "app ref label"
    build_jobs: list[str] = field(default_factory=list)  # the Jenkins job each build asked for
    deploys: list[str] = field(default_factory=list)  # "app image (was vN)"
    records: list[LaneRecordInput] = field(default_factory=list)  # catalogue rows written
    fail_on: str | None = None  # "kind app", e.g. "dns b"; "build app" fails its build
    block_on: str | None = None
    blocked: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def activities(self) -> list[Any]:
        world = self

        @activity.defn(name=CREATE_LANE_RESOURCE)
        async def create_lane_resource(data: LaneResourceInput) -> LedgerEntry:
            step = f"{data.kind} {data.app or data.key}"
            if step == world.block_on:
                world.blocked.set()
                await world.release.wait()
            if step == world.fail_on:
                raise ApplicationError(f"{step} refused", non_retryable=True)
            world.created.append(step)
            # As with Jenkins set up: the CI job entry names the lane's job.
            detail = {"lane": data.lane, **({"job": data.key} if data.kind == "ci_job" else {})}
            return LedgerEntry(kind=data.kind, key=data.key, detail=detail, app=data.app)

        @activity.defn(name=DELETE_LANE_RESOURCE)
        async def delete_lane_resource(entry: LedgerEntry) -> None:
            world.deleted.append(f"{entry.kind} {entry.app or entry.key}")

        @activity.defn(name="notify")
        async def notify(data: NotifyInput) -> None:
            world.notices.append(f"{data.title}: {data.text}")

        @activity.defn(name="build_image")
        async def build_image(data: BuildInput) -> ImageSpec:
            if f"build {data.app}" == world.fail_on:
                raise ApplicationError(f"{data.app} does not compile", non_retryable=True)
            world.builds.append(f"{data.app} {data.ref} {data.version_label}")
            world.build_jobs.append(data.jenkins_job)
            return ImageSpec(image=f"reg.local/{data.app}:{data.version_label}",
                             digest=f"sha256:{data.ref}")

        @activity.defn(name="record_build")
        async def record_build(data: RecordBuildInput) -> int:
            return 1

        @activity.defn(name=DEPLOY_LANE_BUILD)
        async def deploy_lane_build(data: LaneDeployInput) -> LedgerEntry:
            version = int(data.entry.detail.get("version", 1))
            world.deploys.append(f"{data.entry.app} {data.image} (was v{version})")
            return data.entry.model_copy(update={"detail": {
                "version": version + 1, "image": data.image, "url": "http://127.0.0.1:1/"}})

        @activity.defn(name=RECORD_LANE)
        async def record_lane(data: LaneRecordInput) -> None:
            world.records.append(data)

        return [create_lane_resource, delete_lane_resource, notify, build_image, record_build,
                deploy_lane_build, record_lane]
