"""catalogue/hosts.py: hosts registered by their agents, the hosts a release plan names, and
hosts lost when their agent stays away."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from catalogue.hosts import (
    agent_hosts,
    host_states,
    lost_hosts,
    mark_lost,
    register_agent,
    set_cordoned,
)
from catalogue.store import CatalogueError, Store
from catalogue.tables import AuditEvent
from schemas.hosts import AgentRegistration
from schemas.models import PlanHost
from tests.support.catalogue import fresh_catalogue


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    with fresh_catalogue(tmp_path, monkeypatch) as catalogue:
        yield catalogue


def seen(host: str, lb: bool = False) -> AgentRegistration:
    return AgentRegistration(cluster="fleet", host=host, address=f"10.0.0.{host[-1]}",
                             engine="unix:///var/run/docker.sock", labels={"zone": "a"},
                             capacity=8, load_balancer=lb, agent=f"box:{host}")


def age(store: Store, host: str, seconds: float) -> None:
    """Pretend the host's agent was last seen ``seconds`` ago."""
    with store.session() as session:
        row = host_states(store)[("fleet", host)]
        assert row.last_seen is not None
        row.last_seen = row.last_seen - timedelta(seconds=seconds)
        session.add(row)
        session.commit()


def test_an_agent_registers_its_host_once_and_beats(store: Store) -> None:
    register_agent(store, seen("n1", lb=True))
    register_agent(store, seen("n1", lb=True))
    state = host_states(store)[("fleet", "n1")]
    assert (state.address, state.capacity, state.labels, state.load_balancer) == (
        "10.0.0.1", 8, {"zone": "a"}, True)
    with store.session() as session:
        actions = session.exec(select(AuditEvent.action).where(
            col(AuditEvent.action).startswith("host."))).all()
    assert actions == ["host.registered"]


def test_a_cluster_no_agent_registered_runs_without_agents(store: Store) -> None:
    with store.session() as session:
        assert agent_hosts(session, "fleet", 120) == {}


def test_a_plan_names_the_hosts_seen_lately_and_the_load_balancers(store: Store) -> None:
    for host in ("n1", "n2", "n3"):
        register_agent(store, seen(host, lb=host == "n2"))
    set_cordoned(store, "fleet", "n3", True, "disk swap", "ana")
    age(store, "n1", 300)
    with store.session() as session:
        found = agent_hosts(session, "fleet", 120)
    assert found == {"hosts": [PlanHost(name="n2", capacity=8),
                               PlanHost(name="n3", capacity=8, cordoned=True)],
                     "lb_host": "n2"}


def test_a_release_is_refused_when_every_agent_or_the_lb_hosts_is_away(store: Store) -> None:
    register_agent(store, seen("n1", lb=True))
    register_agent(store, seen("n2"))
    age(store, "n1", 300)
    with store.session() as session, pytest.raises(
            CatalogueError, match="the agent of n1, cluster fleet's load-balancer host, was "
                                  r"not seen in the last 120s: start it \(`slipway agent"):
        agent_hosts(session, "fleet", 120)
    age(store, "n2", 300)
    with store.session() as session, pytest.raises(
            CatalogueError, match="no host agent of cluster fleet was seen in the last 120s: "
                                  "n1 .*, n2 .*; start them"):
        agent_hosts(session, "fleet", 120)


def test_a_host_away_too_long_is_lost_once_and_cordoned_until_a_person_says(
        store: Store) -> None:
    register_agent(store, seen("n1", lb=True))
    register_agent(store, seen("n2"))
    assert lost_hosts(store, 60) == []
    age(store, "n2", 90)
    assert [state.host for state in lost_hosts(store, 60)] == ["n2"]
    mark_lost(store, "fleet", "n2")
    assert lost_hosts(store, 60) == []  # started once
    state = host_states(store)[("fleet", "n2")]
    assert state.lost and state.cordoned
    with store.session() as session:
        assert agent_hosts(session, "fleet", 120)["hosts"] == [
            PlanHost(name="n1", capacity=8)]
    register_agent(store, seen("n2"))  # its agent is back
    state = host_states(store)[("fleet", "n2")]
    assert not state.lost and state.cordoned


def test_a_clusters_only_host_or_one_with_nowhere_to_go_is_never_lost(store: Store) -> None:
    register_agent(store, seen("n1", lb=True))
    age(store, "n1", 300)  # one machine after `slipway down`: nowhere to move
    assert lost_hosts(store, 60) == []
    register_agent(store, seen("n2"))
    set_cordoned(store, "fleet", "n2", True, "disk swap", "ana")
    assert lost_hosts(store, 60) == []  # the other host takes no new replica either
    set_cordoned(store, "fleet", "n2", False, "", "ana")
    assert [state.host for state in lost_hosts(store, 60)] == ["n1"]
