"""Rfc2136Dns: name handling and swimlane names as unit tests; updates, lookups and key errors
against a real bind9 (`named`) accepting TSIG-signed RFC 2136 updates."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

import integrations.dns.rfc2136 as dns_module
from integrations.dns.rfc2136 import (
    DnsError,
    DnsSettings,
    DnsUnavailableError,
    Rfc2136Dns,
    absolute_name,
    lane_records,
    parse_server,
    record_type_for,
)
from schemas.settings import Settings
from tests.support.bind9 import Bind9Server, bind9_server  # noqa: F401  (module fixture)

ZONE = "lanes.test"
# A syntactically valid base64 secret that is not the server's.
WRONG_SECRET = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="


# --- unit: names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("shop.lane1", "shop.lane1.lanes.test."),
        ("shop.lane1.lanes.test.", "shop.lane1.lanes.test."),
        ("shop.lane1.lanes.test", "shop.lane1.lanes.test."),  # already ends in the zone
        ("Shop.Lane1", "Shop.Lane1.lanes.test."),
        ("@", "lanes.test."),
        ("", "lanes.test."),
        ("lanes.test.", "lanes.test."),
        ("test", "test.lanes.test."),  # the zone's last label alone is still relative
    ],
)
def test_absolute_name(name: str, expected: str) -> None:
    assert absolute_name(name, ZONE).to_text() == expected
    assert absolute_name(name, ZONE + ".").to_text() == expected


@pytest.mark.parametrize("name", ["shop.example.com.", "lanes.test.example.", "test."])
def test_absolute_name_outside_zone_is_refused(name: str) -> None:
    with pytest.raises(DnsError, match="outside zone lanes.test"):
        absolute_name(name, ZONE)


def test_absolute_name_invalid_label() -> None:
    with pytest.raises(DnsError, match="invalid DNS name"):
        absolute_name("x" * 64 + ".lane1", ZONE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("ns1.example.com", ("ns1.example.com", 53)),
        ("ns1.example.com:53", ("ns1.example.com", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def test_parse_server(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


def test_record_type_for() -> None:
    assert record_type_for("10.0.0.5") == "A"
    assert record_type_for("fd00::5") == "AAAA"
    assert record_type_for("ingress.example.com") == "CNAME"


def test_lane_records_names() -> None:
    records = lane_records("lane1", ["shop", "cart", "shop"], ["mall"], "example.com")
    assert records == [
        ("shop.lane1", "A"),
        ("cart.lane1", "A"),
        ("mall-lane1.example.com.", "A"),
    ]


def test_lane_records_host_target_and_zone_domain() -> None:
    records = lane_records("lane1", ["shop"], ["mall"], "", target="ingress.example.com")
    assert records == [("shop.lane1", "CNAME"), ("mall-lane1", "CNAME")]
    # The names resolve inside the zone as intended.
    assert absolute_name(records[1][0], ZONE).to_text() == "mall-lane1.lanes.test."


@pytest.mark.parametrize(
    ("lane", "services", "biz", "message"),
    [
        ("Lane_1", [], [], "lane name"),
        ("lane1", ["shop.api"], [], "service name"),
        ("lane1", [], ["-mall"], "business name"),
        ("l" * 40, [], ["m" * 30], "external label"),  # the joined label exceeds 63
    ],
)
def test_lane_records_refuse_invalid_labels(
    lane: str, services: list[str], biz: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        lane_records(lane, services, biz, "example.com")


def test_settings_disabled_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPWAY_DNS_SERVER", raising=False)
    assert DnsSettings().client() is None


def test_settings_build_client_without_exposing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_DNS_SERVER", "127.0.0.1:5353")
    monkeypatch.setenv("SLIPWAY_DNS_ZONE", ZONE)
    monkeypatch.setenv("SLIPWAY_DNS_KEY_NAME", "slipway-key")
    monkeypatch.setenv("SLIPWAY_DNS_CREDENTIAL", "lane-dns")
    settings = DnsSettings()
    assert settings.dns_target == "127.0.0.1"
    client = settings.client(secret=lambda: "c2VjcmV0")
    assert client is not None
    assert (client.server, client.port, client.zone, client.key_name) == (
        "127.0.0.1",
        5353,
        ZONE,
        "slipway-key",
    )
    assert "c2VjcmV0" not in repr(client)


def test_settings_read_the_credential_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPWAY_DNS_SERVER", "127.0.0.1:5353")
    monkeypatch.setenv("SLIPWAY_DNS_KEY_NAME", "slipway-key")
    monkeypatch.setenv("SLIPWAY_DNS_CREDENTIAL", "lane-dns")
    current = {"value": "Zmlyc3Q="}
    monkeypatch.setattr(
        dns_module,
        "get_settings",
        lambda: Settings(credentials={"lane-dns": SecretStr(current["value"])}),
    )
    client = DnsSettings().client()
    assert client is not None and callable(client.key_secret)
    current["value"] = "c2Vjb25k"  # rotated after the client was built
    assert client.key_secret() == "c2Vjb25k"


def test_missing_secret_is_a_clear_error() -> None:
    client = Rfc2136Dns("127.0.0.1", 1, ZONE, "slipway-key", key_secret=lambda: "")
    with pytest.raises(DnsError, match="no TSIG secret configured for key 'slipway-key'"):
        client.upsert("shop.lane1", "A", "10.0.0.1")


def test_unsupported_algorithm_is_a_clear_error() -> None:
    client = Rfc2136Dns(
        "127.0.0.1", 1, ZONE, "slipway-key", key_secret=WRONG_SECRET, algorithm="hmac-nope"
    )
    with pytest.raises(DnsError, match="algorithm 'hmac-nope' of key 'slipway-key'"):
        client.delete("shop.lane1")


def test_invalid_record_value_is_a_clear_error() -> None:
    client = Rfc2136Dns("127.0.0.1", 1, ZONE, "slipway-key", key_secret=WRONG_SECRET)
    with pytest.raises(DnsError, match="invalid A record 'not-an-ip' for shop.lane1.lanes.test"):
        client.upsert("shop.lane1", "A", "not-an-ip")


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = Rfc2136Dns("127.0.0.1", port, ZONE, "slipway-key", key_secret=WRONG_SECRET)
    with pytest.raises(DnsUnavailableError, match=f"127.0.0.1:{port}"):
        client.upsert("shop.lane1", "A", "10.0.0.1")
    with pytest.raises(DnsUnavailableError):
        client.lookup("shop.lane1", "A")


# --- integration: a real bind9 ---------------------------------------------------------------


@pytest.fixture
def dns_client(bind9_server: Bind9Server) -> Iterator[Rfc2136Dns]:  # noqa: F811
    yield Rfc2136Dns(
        server=bind9_server.server,
        port=bind9_server.port,
        zone=bind9_server.zone,
        key_name=bind9_server.key_name,
        key_secret=bind9_server.secret,
    )


@pytest.mark.integration
def test_upsert_a_and_cname_then_replace(dns_client: Rfc2136Dns) -> None:
    dns_client.upsert("shop.lane1", "A", "10.0.0.1")
    dns_client.upsert("mall-lane1.lanes.test.", "CNAME", "ingress.example.com")
    assert dns_client.lookup("shop.lane1", "A") == ["10.0.0.1"]
    assert dns_client.lookup("shop.lane1.lanes.test.", "a") == ["10.0.0.1"]
    assert dns_client.lookup("mall-lane1", "CNAME") == ["ingress.example.com"]

    # Upserting again replaces the set, it does not add to it.
    dns_client.upsert("shop.lane1", "A", "10.0.0.2")
    dns_client.upsert("mall-lane1", "CNAME", "gw.example.com.")
    assert dns_client.lookup("shop.lane1", "A") == ["10.0.0.2"]
    assert dns_client.lookup("mall-lane1", "CNAME") == ["gw.example.com"]


@pytest.mark.integration
def test_delete_is_idempotent(dns_client: Rfc2136Dns) -> None:
    dns_client.upsert("cart.lane2", "A", "10.0.0.3")
    dns_client.upsert("cart.lane2", "TXT", '"owner=lane2"')
    dns_client.delete("cart.lane2", "TXT")
    assert dns_client.lookup("cart.lane2", "TXT") == []
    assert dns_client.lookup("cart.lane2", "A") == ["10.0.0.3"]

    dns_client.delete("cart.lane2")
    assert dns_client.lookup("cart.lane2", "A") == []
    # Absent already: both forms still succeed, so a re-run teardown is safe.
    dns_client.delete("cart.lane2")
    dns_client.delete("cart.lane2", "A")
    assert dns_client.lookup("never.created", "A") == []


@pytest.mark.integration
def test_lane_records_applied(dns_client: Rfc2136Dns) -> None:
    records = lane_records("lane3", ["shop", "cart"], ["mall"], ZONE, target="127.0.0.1")
    for name, rtype in records:
        dns_client.upsert(name, rtype, "127.0.0.1")
    assert [dns_client.lookup(name, rtype) for name, rtype in records] == [["127.0.0.1"]] * 3
    for name, _rtype in records:
        dns_client.delete(name)
    assert [dns_client.lookup(name, rtype) for name, rtype in records] == [[]] * 3


@pytest.mark.integration
@pytest.mark.parametrize(
    ("key_name", "reason"), [("slipway-key", "BADSIG"), ("unknown-key", "BADKEY")]
)
def test_wrong_key_is_notauth_without_secret(
    bind9_server: Bind9Server,  # noqa: F811
    key_name: str,
    reason: str,
) -> None:
    client = Rfc2136Dns(
        bind9_server.server, bind9_server.port, bind9_server.zone, key_name, WRONG_SECRET
    )
    with pytest.raises(DnsError) as raised:
        client.upsert("shop.lane9", "A", "10.0.0.9")
    message = str(raised.value)
    assert "NOTAUTH" in message and reason in message
    assert "shop.lane9.lanes.test" in message and "zone lanes.test" in message
    assert WRONG_SECRET not in message and bind9_server.secret not in message
    assert WRONG_SECRET not in repr(client)


@pytest.mark.integration
def test_zone_not_served_names_rcode(bind9_server: Bind9Server) -> None:  # noqa: F811
    client = Rfc2136Dns(
        bind9_server.server,
        bind9_server.port,
        "other.test",
        bind9_server.key_name,
        bind9_server.secret,
    )
    with pytest.raises(DnsError, match=r"shop\.other\.test.*zone other\.test.*NOTAUTH"):
        client.upsert("shop", "A", "10.0.0.1")
