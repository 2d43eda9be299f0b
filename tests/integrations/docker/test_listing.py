"""A replica read from the engine's container list (no inspection): its name, state, and the
address its port is published on, as `GET /containers/json` answers them."""

from __future__ import annotations

from typing import Any

from integrations.docker import listing, runtime
from integrations.docker.listing import Listed
from schemas.models import Instance


def entry(state: str = "running", ports: list[dict[str, Any]] | None = None,
          **labels: str) -> dict[str, Any]:
    """One container as dockerd lists it."""
    return {"Id": "9f1d86fbba47", "Names": ["/slipway-t-shop-prod-local-v3-1"], "State": state,
            "Status": "Up 2 seconds",
            "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8080, "PublicPort": 32877,
                       "Type": "tcp"}] if ports is None else ports,
            "Labels": {"slipway.version": "3", "slipway.index": "1", **labels}}


def test_the_labels_are_the_runtimes() -> None:
    assert (listing.LABEL_VERSION, listing.LABEL_INDEX, listing.LABEL_PORT) == (
        runtime.LABEL_VERSION, runtime.LABEL_INDEX, runtime.LABEL_PORT)


def test_a_running_replica_with_its_port_published_is_an_instance() -> None:
    listed = Listed.of(entry())
    assert (listed.name, listed.status) == ("slipway-t-shop-prod-local-v3-1", "running")
    assert listed.instance("10.0.0.7", 8080) == Instance(name="v3-1", version=3,
                                                         address="127.0.0.1", port=32877)
    assert listed.instance("10.0.0.7", 9090) is None  # that port is not published


def test_without_a_port_the_load_balancers_port_or_any_published_one_counts() -> None:
    ports = [{"PrivatePort": 9000, "Type": "tcp"},  # exposed, not published
             {"IP": "::", "PrivatePort": 8080, "PublicPort": 32878, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 8080, "PublicPort": 32878, "Type": "tcp"},
             {"IP": "127.0.0.1", "PrivatePort": 9090, "PublicPort": 32879, "Type": "tcp"}]
    assert Listed.of(entry(ports=ports, **{"slipway.port": "9090"})).published(None) == (
        "127.0.0.1", 32879)
    assert Listed.of(entry(ports=ports)).published(None) == ("0.0.0.0", 32878)  # IPv4 first
    assert Listed.of(entry(ports=[{"PrivatePort": 8080, "PublicPort": 32880,
                                   "Type": "tcp"}])).instance("10.0.0.7", 8080) == Instance(
        name="v3-1", version=3, address="10.0.0.7", port=32880)  # no IP: the host's address


def test_a_replica_not_running_is_no_instance() -> None:
    for state in ("restarting", "exited", "created", "dead"):
        assert Listed.of(entry(state=state)).instance("127.0.0.1", 8080) is None
