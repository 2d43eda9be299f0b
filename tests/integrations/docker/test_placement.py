"""Where replicas go on a Docker cluster of several hosts, and what the settings accept.

Pure: the placement rule (``place``) and the ``Cluster`` settings model, no engine needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent import load_balancer_keeper
from integrations.docker.placement import NoRoomError, place
from integrations.docker.runtime import DockerRuntime
from lanes.docker_target import DockerLaneTarget
from lanes.resources import LaneSettings
from schemas.settings import Cluster, DockerHost, Settings
from worker import build_cluster, lane_target

H1 = DockerHost(name="h1", engine="unix:///run/h1.sock", address="10.9.7.11")
H2 = DockerHost(name="h2", engine="unix:///run/h2.sock", address="10.9.7.12")
H3 = DockerHost(name="h3", engine="unix:///run/h3.sock", address="10.9.7.13")


def names(hosts: list[DockerHost]) -> list[str]:
    return [host.name for host in hosts]


def test_six_replicas_spread_two_per_host_in_turn() -> None:
    assert names(place([H1, H2, H3], 6, {}, {}, {})) == ["h1", "h2", "h3"] * 2


def test_a_new_replica_goes_where_its_version_has_fewest() -> None:
    # v2 already on h1 and h2: the third goes to h3 even though h3 holds more of v1.
    assert names(place([H1, H2, H3], 1, {"h1": 1, "h2": 1}, {"h1": 3, "h2": 3, "h3": 4},
                       {})) == ["h3"]


def test_ties_go_to_the_host_holding_least_of_the_environment() -> None:
    # The canary of v2 beside v1 (2/2/1 after a scale-down): the emptiest host takes it.
    assert names(place([H1, H2, H3], 1, {}, {"h1": 2, "h2": 2, "h3": 1}, {})) == ["h3"]


def test_capacity_is_respected_and_the_rest_doubles_up() -> None:
    small = H2.model_copy(update={"capacity": 1})
    placed = place([H1, small, H3], 5, {}, {}, {"h2": 0})
    assert names(placed).count("h2") == 1
    assert sorted(names(placed)) == ["h1", "h1", "h2", "h3", "h3"]


def test_a_full_cluster_says_which_hosts_are_full() -> None:
    full = [host.model_copy(update={"capacity": 2}) for host in (H1, H2)]
    with pytest.raises(NoRoomError, match=r"no host has room for 3 more replica\(s\): "
                                          r"h1 2/2, h2 2/2"):
        place(full, 5, {}, {}, {"h1": 1, "h2": 1})


def test_engines_and_publish_host_still_make_a_cluster_of_hosts() -> None:
    cluster = Cluster(engines=["unix:///a.sock", "tcp://10.0.0.2:2376"], publish_host="10.0.0.1")
    assert [(h.name, h.engine, h.address) for h in cluster.hosts] == [
        ("h1", "unix:///a.sock", "10.0.0.1"), ("h2", "tcp://10.0.0.2:2376", "10.0.0.1")]
    default = Cluster()
    assert [(h.name, h.address) for h in default.hosts] == [("h1", "127.0.0.1")]
    assert default.engines == ["unix:///var/run/docker.sock"]


def test_hosts_name_their_engines_and_survive_the_environment_round_trip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(hosts=[H1, H2.model_copy(update={"capacity": 4, "labels": {"zone": "b"}}),
                             DockerHost(name="h3", engine="ssh://ops@h3")])
    assert cluster.engines == [H1.engine, H2.engine, "ssh://ops@h3"]
    assert cluster.hosts[2].address == "127.0.0.1"  # no address: the cluster's publish_host
    value = Settings(clusters={"fleet": cluster}).environment()["SLIPWAY_CLUSTERS"]
    monkeypatch.setenv("SLIPWAY_CLUSTERS", value)
    assert Settings().clusters["fleet"] == cluster
    # The form an operator writes: hosts only.
    monkeypatch.setenv("SLIPWAY_CLUSTERS", json.dumps({"fleet": {"hosts": [
        {"name": "h1", "engine": "tcp://10.0.0.11:2376", "address": "10.0.0.11"}]}}))
    assert Settings().clusters["fleet"].engines == ["tcp://10.0.0.11:2376"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"hosts": [H1], "engines": ["unix:///other.sock"]}, "give hosts or engines, not both"),
    ({"hosts": [H1, H1.model_copy(update={"engine": "unix:///x"})]}, "same name: h1"),
    ({"engines": []}, "at least one Docker host"),
    ({"hosts": [{"name": "H 1", "engine": "unix:///x"}]}, "String should match pattern"),
])
def test_a_cluster_that_cannot_be_placed_on_is_refused(fields: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Cluster.model_validate(fields)


def test_the_worker_gives_each_docker_use_its_hosts(tmp_path: Path) -> None:
    fleet = Cluster(hosts=[H1, H2, H3])
    settings = Settings(state_dir=tmp_path, clusters={"local": Cluster(), "fleet": fleet},
                        default_cluster="fleet")
    runtime, _traffic = build_cluster("fleet", fleet, settings, None)
    assert isinstance(runtime, DockerRuntime) and runtime.hosts == [H1, H2, H3]
    # The fleet's LB host (its first) keeps its load balancers from the catalogue's record:
    # its agent reaches no other host's engine.
    reconciler = load_balancer_keeper(settings, "h1")
    assert reconciler is not None and reconciler.runtime is None
    # A one-host cluster's agent also asks its engine where replicas answer now.
    alone = settings.model_copy(update={"clusters": {"local": Cluster()},
                                        "default_cluster": "local"})
    local = load_balancer_keeper(alone, "h1")
    assert local is not None and local.runtime is not None
    assert local.runtime.engines == ["unix:///var/run/docker.sock"]
    # Lanes run on the cluster's first host and publish on its address.
    target = lane_target(settings, LaneSettings(), None)
    assert isinstance(target, DockerLaneTarget) and isinstance(target.runtime, DockerRuntime)
    assert target.runtime.hosts == [H1]
