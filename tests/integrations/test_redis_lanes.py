"""RedisLaneBroker on a real redis-server (tests/support/redis_server.py, with a password):
a lane's groups and registry entries, opened and closed idempotently, found and swept by
the janitor's calls, and the errors of a wrong password and of an unreachable broker."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from integrations.broker.layout import (
    baseline_groups_key,
    parse_windows,
    registry_key,
    windows_key,
)
from integrations.broker.redis_lanes import (
    BrokerAccessError,
    BrokerRequestError,
    BrokerUnavailableError,
    MessagePolicy,
    RedisLaneBroker,
)
from integrations.errors import PermanentRuntimeError
from tests.support.redis_server import RedisServer


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[RedisLaneBroker]:
    with RedisLaneBroker(redis_server.url, redis_server.password) as opened:
        yield opened


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as opened:
        yield opened


def topics(count: int = 2) -> list[str]:
    """Topics no other test uses (the server is the session's)."""
    tag = uuid.uuid4().hex[:8]
    return [f"orders.{tag}.{index}" for index in range(count)]


def group_names(client: redis.Redis, topic: str) -> list[str]:
    if not client.exists(topic):
        return []
    return sorted(group["name"] for group in client.xinfo_groups(topic))


def test_open_creates_the_lanes_groups_and_registry_entries(
        broker: RedisLaneBroker, client: redis.Redis, redis_server: RedisServer) -> None:
    names = topics()
    client.xadd(names[0], {"before": "1"})  # an existing stream: the group starts at its end
    detail = broker.open_lane("feat-a", names, MessagePolicy.LANE_CONSUME)

    for topic in names:
        assert group_names(client, topic) == [f"{topic}-feat-a"]
        assert client.hget(registry_key(topic), "feat-a") == "lane-consume"
        [window] = parse_windows(client.hget(windows_key(topic), "feat-a"))
        assert window.until == ""  # open
    [info] = client.xinfo_groups(names[0])
    assert info["last-delivered-id"] == client.xinfo_stream(names[0])["last-generated-id"]
    assert info["lag"] == 0  # what was there before the lane is not the lane's to read

    assert detail == {
        "broker": redis_server.url, "lane": "feat-a", "policy": "lane-consume",
        "topics": names, "groups": {topic: f"{topic}-feat-a" for topic in names},
        "registry": {topic: registry_key(topic) for topic in names},
    }
    assert redis_server.password not in json.dumps(detail)


def test_open_is_idempotent_and_switches_policy(broker: RedisLaneBroker,
                                                client: redis.Redis) -> None:
    names = topics(1)
    first = broker.open_lane("feat-b", names, MessagePolicy.LANE_CONSUME)
    assert broker.open_lane("feat-b", names, MessagePolicy.LANE_CONSUME) == first
    topic = names[0]
    assert group_names(client, topic) == [f"{topic}-feat-b"]
    assert len(parse_windows(client.hget(windows_key(topic), "feat-b"))) == 1

    client.xadd(topic, {"n": "1"})
    broker.open_lane("feat-b", names, MessagePolicy.QA_CONSUME)
    assert client.hget(registry_key(topic), "feat-b") == "qa-consume"
    [window] = parse_windows(client.hget(windows_key(topic), "feat-b"))
    assert window.until == client.xinfo_stream(topic)["last-generated-id"]  # closed now


def test_close_undoes_open_from_the_detail_alone_and_is_idempotent(
        broker: RedisLaneBroker, client: redis.Redis, redis_server: RedisServer) -> None:
    names = topics()
    detail = json.loads(json.dumps(broker.open_lane("feat-c", names, MessagePolicy.QA_CONSUME)))
    client.xgroup_create(names[0], "svc", id="$")  # the baseline's group stays

    with RedisLaneBroker(redis_server.url, redis_server.password) as another:
        another.close_lane(detail)
        another.close_lane(detail)  # already gone: fine

    assert group_names(client, names[0]) == ["svc"]
    assert group_names(client, names[1]) == []
    for topic in names:
        assert client.hgetall(registry_key(topic)) == {}
    assert broker.lanes(names) == set()


def test_close_refuses_a_detail_of_another_broker(broker: RedisLaneBroker) -> None:
    detail = broker.open_lane("feat-d", topics(1), MessagePolicy.QA_CONSUME)
    with pytest.raises(BrokerRequestError, match="redis://10.0.0.9:6379/0"):
        broker.close_lane({**detail, "broker": "redis://10.0.0.9:6379/0"})
    with pytest.raises(BrokerRequestError, match="not a message-lane detail"):
        broker.close_lane({"lane": "feat-d"})


def test_lanes_finds_registry_entries_and_leftover_groups_and_forget_sweeps_one(
        broker: RedisLaneBroker, client: redis.Redis) -> None:
    names = topics()
    broker.open_lane("alive", names, MessagePolicy.LANE_CONSUME)
    broker.open_lane("dead", names[:1], MessagePolicy.QA_CONSUME)
    client.xgroup_create(names[1], f"{names[1]}-orphan", id="$")  # a group with no entry
    # The baseline's group, named like a lane's: registered, so never a lane.
    client.xgroup_create(names[0], f"{names[0]}-service", id="$")
    client.sadd(baseline_groups_key(names[0]), f"{names[0]}-service")

    assert broker.lanes(names) == {"alive", "dead", "orphan"}

    broker.forget_lane("dead", names)
    broker.forget_lane("orphan", names)
    broker.forget_lane("orphan", names)  # idempotent
    broker.forget_lane("service", names)  # a baseline group: left alone
    assert broker.lanes(names) == {"alive"}
    assert group_names(client, names[0]) == sorted([f"{names[0]}-alive",
                                                    f"{names[0]}-service"])
    assert group_names(client, names[1]) == [f"{names[1]}-alive"]
    assert client.hkeys(registry_key(names[0])) == ["alive"]


def test_a_lane_cannot_take_a_baseline_group(broker: RedisLaneBroker,
                                             client: redis.Redis) -> None:
    [topic] = topics(1)
    client.sadd(baseline_groups_key(topic), f"{topic}-service")
    with pytest.raises(BrokerRequestError, match="baseline consumer group"):
        broker.open_lane("service", [topic], MessagePolicy.LANE_CONSUME)


def test_names_are_checked_before_anything_is_written(broker: RedisLaneBroker) -> None:
    with pytest.raises(BrokerRequestError, match="lane name"):
        broker.open_lane("Not A Lane", topics(1), MessagePolicy.QA_CONSUME)
    with pytest.raises(BrokerRequestError, match="topic names"):
        broker.open_lane("feat-e", ["orders{x}"], MessagePolicy.QA_CONSUME)
    with pytest.raises(BrokerRequestError, match="message policy"):
        broker.open_lane("feat-e", topics(1), cast(MessagePolicy, "lane-only"))


@pytest.mark.parametrize("given", ["wrong-secret-7f3a9c", ""])
def test_a_wrong_or_missing_password_is_a_permanent_error_naming_the_broker(
        redis_server: RedisServer, given: str) -> None:
    with RedisLaneBroker(redis_server.url, given) as refused, \
            pytest.raises(BrokerAccessError) as caught:
        refused.open_lane("feat-f", topics(1), MessagePolicy.QA_CONSUME)
    message = str(caught.value)
    assert isinstance(caught.value, PermanentRuntimeError)
    assert redis_server.url in message and "password" in message
    if given:
        assert given not in message and given not in repr(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_password_in_the_url_never_shows(redis_server: RedisServer) -> None:
    url = f"redis://:url-secret-55d1@127.0.0.1:{redis_server.port}/0"
    with RedisLaneBroker(url) as refused, pytest.raises(BrokerAccessError) as caught:
        refused.lanes(topics(1))
    assert "url-secret-55d1" not in str(caught.value)
    assert "url-secret-55d1" not in repr(refused) and refused.url == redis_server.url


def test_an_unreachable_broker_is_a_retryable_error_naming_it() -> None:
    # Bound but not listening: connections are refused, and no other process can listen.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{held.getsockname()[1]}/0"
        with RedisLaneBroker(url, "some-secret-0b2e") as unreachable, \
                pytest.raises(BrokerUnavailableError) as caught:
            unreachable.open_lane("feat-g", ["orders"], MessagePolicy.QA_CONSUME)
    message = str(caught.value)
    assert isinstance(caught.value, ConnectionError)
    assert not isinstance(caught.value, PermanentRuntimeError)
    assert url in message and "reach" in message and "some-secret-0b2e" not in message


def test_an_acl_refusal_is_a_permanent_error_saying_what_to_grant(
        redis_server: RedisServer, client: redis.Redis) -> None:
    user = f"limited-{uuid.uuid4().hex[:6]}"
    client.acl_setuser(user, enabled=True, passwords=["+limited-secret-91c"],
                       commands=["+@connection"], keys=["*"])
    url = f"redis://{user}@127.0.0.1:{redis_server.port}/0"
    try:
        with RedisLaneBroker(url, "limited-secret-91c") as limited, \
                pytest.raises(BrokerAccessError) as caught:
            limited.open_lane("feat-h", topics(1), MessagePolicy.QA_CONSUME)
    finally:
        client.acl_deluser(user)
    message = str(caught.value)
    assert url in message and "ACL" in message and "limited-secret-91c" not in message
