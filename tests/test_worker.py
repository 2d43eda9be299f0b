"""worker.py: where lanes run, activity slots sized to the threads, a build queue of its own,
graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from lanes.docker_target import DockerLaneTarget
from lanes.kubernetes_target import KubernetesLaneTarget
from lanes.resources import LaneSettings
from schemas.settings import Cluster, Settings
from worker import (
    lane_target,
    make_build_worker,
    make_worker,
    run_until_terminated,
    sdk_runtime,
)
from workflows.janitor import JanitorWorkflow


def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, default_cluster="local", clusters={
        "local": Cluster(), "k8s": Cluster(runtime="kubernetes",
                                           kubeconfig=str(tmp_path / "kubeconfig"))})


def test_lanes_run_on_the_default_cluster_unless_told(tmp_path: Path) -> None:
    assert isinstance(lane_target(settings(tmp_path), LaneSettings(), None), DockerLaneTarget)
    on_k8s = lane_target(settings(tmp_path), LaneSettings(lane_cluster="k8s"), None)
    assert isinstance(on_k8s, KubernetesLaneTarget) and on_k8s.cluster == "k8s"


def test_an_unknown_lane_cluster_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SLIPWAY_LANE_CLUSTER='prod' is not a configured "
                                         "cluster \\(local, k8s\\)"):
        lane_target(settings(tmp_path), LaneSettings(lane_cluster="prod"), None)


async def test_activity_slots_match_the_threads_and_builds_have_their_own(
    env: WorkflowEnvironment, tmp_path: Path,
) -> None:
    values = Settings(state_dir=tmp_path, task_queue="slots", default_cluster="local",
                      clusters={"local": Cluster()})
    with ThreadPoolExecutor(max_workers=5) as threads, ThreadPoolExecutor(2) as build_threads:
        main = make_worker(env.client, values, threads).config()
        builds = make_build_worker(env.client, values, build_threads).config()
    assert main["max_concurrent_activities"] == 5
    assert main["task_queue"] == "slots"
    assert "build_image" not in [getattr(f, "__name__", "") for f in main["activities"]]
    assert builds["task_queue"] == "slots-builds"
    assert builds["max_concurrent_activities"] == 2
    assert [f.__name__ for f in builds["activities"]] == ["build_image"]
    assert main["graceful_shutdown_timeout"] == builds["graceful_shutdown_timeout"] > timedelta(0)
    # One build for both (Worker Versioning): a build a pinned release schedules runs on the
    # code of the worker that runs the release; its deployment is the task queue.
    versioned, build_versioned = main["deployment_config"], builds["deployment_config"]
    assert versioned is not None and build_versioned is not None
    assert build_versioned.version == versioned.version
    assert (versioned.version.deployment_name, versioned.version.build_id) == (
        "slots", values.worker_build().value)
    assert versioned.use_worker_versioning


async def test_sigterm_stops_the_workers_gracefully(env: WorkflowEnvironment) -> None:
    worker = Worker(env.client, task_queue=f"sigterm-{uuid.uuid4()}",
                    workflows=[JanitorWorkflow])
    running = asyncio.create_task(run_until_terminated(worker))
    await asyncio.sleep(0.2)  # let it install its signal handlers and poll
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, timeout=30)  # returns: shut down, not killed
    assert not worker.is_running


def test_the_sdk_metrics_endpoint_is_off_unless_an_address_is_given(tmp_path: Path) -> None:
    assert sdk_runtime(settings(tmp_path)) is None
    assert sdk_runtime(settings(tmp_path).model_copy(
        update={"worker_metrics_address": "127.0.0.1:0"})) is not None
    for bad in ("9464", "http://127.0.0.1:9464", "127.0.0.1:port"):
        with pytest.raises(ValueError, match="worker_metrics_address"):
            Settings(worker_metrics_address=bad)
