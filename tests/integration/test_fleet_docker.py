"""A gray release on a cluster of three Docker hosts (issue #28, first slice).

Three network-namespace hosts with their own dockerd (tests/support/fleet.py); the sample app
built on the main engine and pushed to the test registry, which every host reaches as its own
127.0.0.1:PORT and pulls from; the environment's HAProxy in the root namespace targeting
``<host address>:<port>`` of replicas on every host; the worker built as worker.py builds it.
Six replicas, v1 then v2 under a bounded request loop: two replicas per host, 0 failed
requests.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment

from catalogue.hosts import cordoned_hosts
from catalogue.releases import env_key
from catalogue.store import Store
from catalogue.tables import Environment
from integrations.haproxy.router import HaproxyRouter
from schemas.hosts import DrainOutcome
from schemas.models import ReleaseOutcome, ReleaseRequest
from schemas.settings import Settings
from starter.service.catalogue import add_env, mark_ready, register_app
from starter.service.hosts import start_drain
from starter.service.releases import follow, start_release, validate_release
from tests.integration.test_release_docker import SAMPLE
from tests.support.fleet import Fleet, fleet  # noqa: F401  (the session's test bed)
from tests.support.load import failures, request_loop
from tests.support.registry import RegistryServer

pytestmark = pytest.mark.integration

APP = "fleetshop"
CLUSTER = "fleet"
REPLICAS = 6


@pytest.fixture
def settings(settings: Settings, fleet: Fleet, registry_server: RegistryServer,  # noqa: F811
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The integration settings plus a cluster of the test bed's hosts, whose engines pull
    from the test registry (its port forwarded into every host)."""
    fleet.forward(int(registry_server.host.rsplit(":", 1)[1]))
    values = settings.model_copy(update={"clusters": {**settings.clusters,
                                                      CLUSTER: fleet.cluster()}})
    monkeypatch.setattr("schemas.settings.get_settings", lambda: values)
    return values


@pytest.fixture
def cleanup(fleet: Fleet) -> Iterator[None]:  # noqa: F811
    yield
    fleet.remove_app_containers(APP)


def placement(fleet: Fleet) -> dict[str, Counter[str]]:  # noqa: F811
    """Running replicas per host, by version."""
    key = env_key(APP, "prod", CLUSTER)
    found: dict[str, Counter[str]] = {}
    for host in fleet.hosts:
        with contextlib.closing(host.client()) as client:
            found[host.name] = Counter(
                f"v{c.labels['slipway.version']}" for c in client.containers.list(
                    filters={"label": f"slipway.env={key}"}))
    return found


def register(store: Store, settings: Settings, replicas: int) -> str:
    """The sample app with a gray prod environment on the fleet; its load balancer's URL."""
    register_app(store, APP, category="in-house", tier="core", owners=["ana"],
                 approvers=["lead"], source=str(SAMPLE), description="", actor="ana")
    mark_ready(store, APP, "ana")
    add_env(store, APP, "prod", cluster=CLUSTER, replicas=replicas, cpu="", memory="64Mi",
            ports=[8080], env_vars={}, runtime="docker", namespace="default",
            health_path="/healthz", settings=settings, actor="ana", strategy="gray",
            stable_seconds=2, approval="none")
    with store.session() as session:
        return f"http://127.0.0.1:{session.exec(select(Environment)).one().lb_port}/"


async def release(temporal: WorkflowEnvironment, settings: Settings, store: Store,
                  version: str) -> tuple[ReleaseOutcome, float]:
    started_at = time.monotonic()
    request, summary = validate_release(
        store, ReleaseRequest(app=APP, env="prod", version_label=version, requested_by="ana"))
    started = await start_release(temporal.client, settings, request, summary)
    outcome = await follow(started.handle, lambda _status: None)
    return outcome, time.monotonic() - started_at


async def test_gray_release_of_six_replicas_over_three_hosts_drops_nothing(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    fleet: Fleet, cleanup: None,  # noqa: F811
) -> None:
    url = register(store, settings, REPLICAS)
    addresses = {host.address: host.name for host in fleet.hosts}

    first, first_seconds = await release(temporal, settings, store, "1.0.0")
    assert first.baseline_version == 1
    after_v1 = placement(fleet)
    assert {host: dict(c) for host, c in after_v1.items()} == {
        host.name: {"v1": 2} for host in fleet.hosts}

    with request_loop(url) as outcomes:
        time.sleep(0.5)  # traffic flows before the release starts
        second, second_seconds = await release(temporal, settings, store, "2.0.0")
        time.sleep(0.5)
    after_v2 = placement(fleet)
    key = env_key(APP, "prod", CLUSTER)
    servers = HaproxyRouter(settings.state_dir, settings.haproxy_bin).servers(key)
    served_by = Counter(addresses.get(server.address, server.address) for server in servers
                        if server.weight > 0 and not server.draining)
    latencies = sorted(outcomes.latencies)
    print(f"\nfleet {fleet.prefix}: hosts {', '.join(f'{h.name}={h.address}' for h in fleet.hosts)}"
          f"\nv1 released in {first_seconds:.1f}s, placement {_show(after_v1)}"
          f"\nv2 released in {second_seconds:.1f}s (gray 1 → 50% → 100%), placement "
          f"{_show(after_v2)}; HAProxy servers per host {dict(served_by)}"
          f"\nrequests through HAProxy during the v2 release: {dict(outcomes)}; "
          f"failed {sum(failures(outcomes).values())} of {outcomes.total()}; latency p50 "
          f"{latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")

    assert second.baseline_version == 2
    assert failures(outcomes) == {}
    assert outcomes["200 sample-app 1.0.0"] > 0 and outcomes["200 sample-app 2.0.0"] > 0
    assert {host: dict(c) for host, c in after_v2.items()} == {
        host.name: {"v2": 2} for host in fleet.hosts}
    # The load balancer targets each replica at its host's address.
    assert dict(served_by) == {host.name: 2 for host in fleet.hosts}


def _show(placed: dict[str, Counter[str]]) -> str:
    return ", ".join(f"{host} {dict(counts)}" for host, counts in placed.items())


async def test_draining_a_host_moves_its_replicas_without_a_failed_request(
    temporal: WorkflowEnvironment, running_worker: None, settings: Settings, store: Store,
    fleet: Fleet, cleanup: None,  # noqa: F811
) -> None:
    url = register(store, settings, 3)
    first, _ = await release(temporal, settings, store, "1.0.0")
    assert first.baseline_version == 1
    drained = fleet.hosts[0]
    assert placement(fleet)[drained.name] == Counter({"v1": 1})

    with request_loop(url) as outcomes:
        time.sleep(0.5)
        began = time.monotonic()
        handle = await start_drain(temporal.client, store, settings, drained.name, CLUSTER,
                                   "disk swap", "ana")
        outcome: DrainOutcome = await handle.result()
        took = time.monotonic() - began
        time.sleep(0.5)
    after = placement(fleet)
    key = env_key(APP, "prod", CLUSTER)
    servers = HaproxyRouter(settings.state_dir, settings.haproxy_bin).servers(key)
    print(f"\ndrained {drained.name} in {took:.1f}s: {outcome.moved}; placement {_show(after)}; "
          f"requests through HAProxy: {dict(outcomes)}")
    assert len(outcome.moved) == 1 and outcome.skipped == []
    assert after[drained.name] == Counter()
    assert sum(counts["v1"] for counts in after.values()) == 3
    assert failures(outcomes) == {}
    assert sorted(server.address for server in servers) == sorted(
        host.address for host in fleet.hosts[1:] for _ in range(after[host.name]["v1"]))
    assert cordoned_hosts(store, CLUSTER) == {drained.name}
