"""agent.py: which host an agent serves, what it registers, what it runs, and one keeper of
the load balancers per state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import agent as slipway_agent
from agent import AgentError, agent_activities, docker_host_names, own_hosts, registrations
from catalogue.store import Store
from schemas.settings import Cluster, DockerHost, Settings

H1 = DockerHost(name="h1", engine="unix:///var/run/docker.sock", address="10.0.0.11",
                labels={"zone": "a"}, capacity=8)
H2 = DockerHost(name="h2", engine="unix:///var/run/docker.sock", address="10.0.0.12")


def fleet(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, default_cluster="fleet", clusters={
        "fleet": Cluster(hosts=[H1, H2], lb_host="h2"),
        "k8s": Cluster(runtime="kubernetes", kubeconfig=str(tmp_path / "kubeconfig"))})


def test_an_agent_serves_a_host_of_a_docker_cluster_and_says_so_by_name(
        tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    assert own_hosts(settings, "h1") == {"fleet": H1}
    with pytest.raises(AgentError, match="no Docker cluster in SLIPWAY_CLUSTERS has a host "
                                         "'h9'; its hosts: h1, h2"):
        own_hosts(settings, "h9")
    assert docker_host_names(settings) == ["h1", "h2"]


def test_an_agent_registers_its_host_as_configured(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    (seen,) = registrations(settings, "h1")
    assert (seen.cluster, seen.host, seen.address, seen.labels, seen.capacity,
            seen.load_balancer) == ("fleet", "h1", "10.0.0.11", {"zone": "a"}, 8, False)
    assert seen.agent.endswith(f":{os.getpid()}")
    assert registrations(settings, "h2")[0].load_balancer  # lb_host


def test_only_the_load_balancer_hosts_agent_runs_the_load_balancer(tmp_path: Path) -> None:
    settings = fleet(tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'catalogue.db'}")
    names = {fn.__name__ for fn in agent_activities(settings, "h1", store)}
    assert {"bring_up_on_host", "host_inventory", "watch_health", "remove_version"} <= names
    assert "add_to_lb" not in names and "measure_analysis" not in names
    balancer = {fn.__name__ for fn in agent_activities(settings, "h2", store)}
    assert {"add_to_lb", "drain", "ensure_frontend", "measure_analysis"} <= balancer


def test_one_agent_at_a_time_keeps_the_load_balancers(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    first = slipway_agent.keeper_lock(settings)
    assert first is not None
    assert slipway_agent.keeper_lock(settings) is None  # a second agent serves, not keeps
    assert (tmp_path / "lb-keeper.lock").read_text().strip() == str(os.getpid())
    first.close()  # the keeper is gone (its process exit closes it the same way)
    again = slipway_agent.keeper_lock(settings)
    assert again is not None
    again.close()
