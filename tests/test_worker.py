"""worker.lane_target: lanes run where SLIPWAY_LANE_CLUSTER (or the default cluster) says."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanes.docker_target import DockerLaneTarget
from lanes.kubernetes_target import KubernetesLaneTarget
from lanes.resources import LaneSettings
from schemas.settings import Cluster, Settings
from worker import lane_target


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
