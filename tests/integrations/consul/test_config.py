"""ConsulConfig (py-consul) against the Consul KV HTTP fake."""

from __future__ import annotations

import consul
import pytest

from integrations.consul.config import ConsulConfig, folder
from tests.support.consul_fake import ConsulFake, running_consul

TOKEN = "0b1e2c3d-acl-token"


def _seed(fake: ConsulFake) -> None:
    fake.put("config/it/shop/db/url", "postgres://it-db/shop")
    fake.put("config/it/shop/feature.flags", b"\x00\x01binary", flags=7)
    fake.put("config/it/shop/empty/", b"")  # a folder marker: null value in Consul
    fake.put("config/it/shopping/db/url", "must not be copied")  # sibling, same string prefix
    fake.put("config/it/web/url", "must not be copied")


def test_fork_copies_exactly_the_keys_under_the_prefix_with_the_token() -> None:
    with running_consul(token=TOKEN) as fake:
        _seed(fake)
        config = ConsulConfig(fake.url, token=TOKEN)

        assert config.fork("config/it/shop", "config/lanes/pay-42/shop") == 3

        assert fake.values("config/lanes/") == {
            "config/lanes/pay-42/shop/db/url": b"postgres://it-db/shop",
            "config/lanes/pay-42/shop/empty/": b"",
            "config/lanes/pay-42/shop/feature.flags": b"\x00\x01binary",
        }
        assert fake.kv["config/lanes/pay-42/shop/feature.flags"].flags == 7
        assert fake.writes() == [("PUT", "config/lanes/pay-42/shop/db/url"),
                                 ("PUT", "config/lanes/pay-42/shop/empty/"),
                                 ("PUT", "config/lanes/pay-42/shop/feature.flags")]
        reads = [c for c in fake.calls if c.method == "GET"]
        assert [(c.key, "recurse" in c.query) for c in reads] == [("config/it/shop/", True)]
        assert {c.token for c in fake.calls} == {TOKEN}
        assert config.get("config/lanes/pay-42/shop/db/url") == b"postgres://it-db/shop"


def test_fork_is_idempotent() -> None:
    with running_consul() as fake:
        _seed(fake)
        config = ConsulConfig(fake.url)
        assert config.fork("/config/it/shop/", "config/lanes/pay-42/shop") == 3
        first = fake.values("config/lanes/")
        assert config.fork("config/it/shop", "config/lanes/pay-42/shop/") == 3
        assert fake.values("config/lanes/") == first
        assert config.keys("config/lanes/pay-42") == sorted(first)


def test_fork_of_an_empty_prefix_copies_nothing() -> None:
    with running_consul() as fake:
        config = ConsulConfig(fake.url)
        assert config.fork("config/it/nothing", "config/lanes/pay-42/nothing") == 0
        assert fake.writes() == []


def test_delete_prefix_twice_is_fine_and_spares_siblings() -> None:
    with running_consul(token=TOKEN) as fake:
        _seed(fake)
        fake.put("config/lanes/pay-42/shop/db/url", "lane")
        fake.put("config/lanes/pay-420/shop/db/url", "another lane")
        config = ConsulConfig(fake.url, token=TOKEN)

        config.delete_prefix("config/lanes/pay-42")
        config.delete_prefix("config/lanes/pay-42")

        assert fake.writes() == [("DELETE", "config/lanes/pay-42/")] * 2
        assert all("recurse" in c.query for c in fake.calls if c.method == "DELETE")
        assert fake.values("config/lanes/") == {
            "config/lanes/pay-420/shop/db/url": b"another lane"}
        assert config.get("config/lanes/pay-42/shop/db/url") is None


def test_wrong_token_is_refused() -> None:
    with running_consul(token=TOKEN) as fake:
        _seed(fake)
        with pytest.raises(consul.ACLPermissionDenied):
            ConsulConfig(fake.url, token="wrong").fork("config/it/shop", "config/lanes/x/shop")
        assert fake.values("config/lanes/") == {}


def test_given_token_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    with running_consul(token=TOKEN) as fake:
        fake.put("a/b", "v")
        assert ConsulConfig(fake.url, token=TOKEN).get("a/b") == b"v"
        assert [c.token for c in fake.calls] == [TOKEN]


def test_prefixes_are_guarded() -> None:
    assert folder("/config/it/shop") == "config/it/shop/"
    with pytest.raises(ValueError, match="must not be empty"):
        folder("/")
    config = ConsulConfig("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="must not be empty"):
        config.delete_prefix("")
    with pytest.raises(ValueError, match="contains"):
        config.fork("config/it/shop", "config/it/shop/lane")
