"""lanes.messages on a real redis-server: baseline consumers and a lane consumer reading one
topic, for both message policies, each message handled exactly once and by the side the
lane's policy says; consumers polled in a bounded loop until every group is drained."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import redis

from catalogue.tables import Environment
from integrations.broker.redis_lanes import MessagePolicy, RedisLaneBroker
from lanes.messages import (
    LANE_FIELD,
    LaneConsumer,
    LaneGroupMissingError,
    LaneMessage,
    group_env_var,
    group_for,
    produce,
)
from lanes.resources import LaneResources, LaneSettings
from tests.support.redis_server import RedisServer

N = 25  # messages of each kind per test
BASELINE_GROUP = "orders-service"
LANE = "feat-x"
MAX_ROUNDS = 200  # polls per consumer before a test gives up on draining


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    with redis_server.client() as opened:
        yield opened


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[RedisLaneBroker]:
    with RedisLaneBroker(redis_server.url, redis_server.password) as opened:
        yield opened


@pytest.fixture
def topic() -> str:
    return f"orders.{uuid.uuid4().hex[:8]}"


@dataclass
class Ledger:
    """Who handled which message: message id → the labels of the consumers that did."""

    handled: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    lanes: dict[str, str] = field(default_factory=dict)  # message id → lane the handler saw

    def handler(self, label: str) -> Any:
        def handle(message: LaneMessage) -> None:
            assert LANE_FIELD not in message.fields  # the payload only
            self.handled[message.id].append(label)
            self.lanes[message.id] = message.lane
        return handle

    def by(self, prefix: str) -> set[str]:
        """Ids handled by consumers whose label starts with ``prefix``."""
        return {mid for mid, labels in self.handled.items()
                if any(label.startswith(prefix) for label in labels)}


def drain(client: redis.Redis, topic: str, consumers: dict[str, LaneConsumer],
          ledger: Ledger) -> None:
    """Poll every consumer in turn until each one's group has read and acknowledged
    everything on the stream (bounded: a consumer that never drains fails the test)."""
    groups = {consumer.group for consumer in consumers.values()}
    for _ in range(MAX_ROUNDS):
        for label, consumer in consumers.items():
            consumer.poll(ledger.handler(label), count=7, block_ms=0)
        info = {group["name"]: group for group in client.xinfo_groups(topic)}
        if all(info[group]["pending"] == 0 and info[group]["lag"] == 0 for group in groups):
            return
    pytest.fail(f"groups {sorted(groups)} not drained after {MAX_ROUNDS} rounds")


def produce_both(client: redis.Redis, topic: str, lane: str = LANE) -> tuple[list[str],
                                                                             list[str]]:
    """N unkeyed and N ``lane`` messages, interleaved; (unkeyed ids, lane ids)."""
    plain, keyed = [], []
    for index in range(N):
        plain.append(produce(client, topic, {"n": str(index)}))
        keyed.append(produce(client, topic, {"n": str(index)}, lane=lane))
    return plain, keyed


def consumers(client: redis.Redis, topic: str,
              monkeypatch: pytest.MonkeyPatch) -> dict[str, LaneConsumer]:
    """Two baseline consumers in the service's group and the lane's consumer, its group
    read from the variable Slipway sets in the lane's containers."""
    monkeypatch.setenv(group_env_var(topic), f"{topic}-{LANE}")
    return {
        "base-1": LaneConsumer(client, topic, BASELINE_GROUP, "base-1"),
        "base-2": LaneConsumer(client, topic, BASELINE_GROUP, "base-2"),
        "lane": LaneConsumer(client, topic, group_for(topic, BASELINE_GROUP), "lane-1", LANE),
    }


def assert_exactly_once(ledger: Ledger, ids: list[str]) -> None:
    duplicates = {mid: labels for mid, labels in ledger.handled.items() if len(labels) > 1}
    assert duplicates == {}
    assert set(ids) <= set(ledger.handled), "some messages were never handled"


def test_qa_consume_the_baseline_handles_every_message(
        client: redis.Redis, broker: RedisLaneBroker, topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    readers = consumers(client, topic, monkeypatch)
    broker.open_lane(LANE, [topic], MessagePolicy.QA_CONSUME)
    plain, keyed = produce_both(client, topic)
    ledger = Ledger()

    drain(client, topic, readers, ledger)

    assert_exactly_once(ledger, plain + keyed)
    assert ledger.by("base") == set(plain + keyed)
    assert ledger.by("lane") == set()
    assert {ledger.lanes[mid] for mid in keyed} == {LANE}


def test_lane_consume_the_lane_handles_its_messages_and_only_those(
        client: redis.Redis, broker: RedisLaneBroker, topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    readers = consumers(client, topic, monkeypatch)
    broker.open_lane(LANE, [topic], MessagePolicy.LANE_CONSUME)
    plain, keyed = produce_both(client, topic)
    # Another lane's messages, that lane not open here: the baseline's.
    more_plain, others = produce_both(client, topic, lane="feat-other")
    ledger = Ledger()

    drain(client, topic, readers, ledger)

    assert_exactly_once(ledger, plain + keyed + more_plain + others)
    assert ledger.by("lane") == set(keyed)
    assert ledger.by("base") == set(plain + more_plain + others)


def test_two_baseline_consumers_share_the_group_without_duplicates(
        client: redis.Redis, topic: str) -> None:
    readers = {name: LaneConsumer(client, topic, BASELINE_GROUP, name)
               for name in ("base-1", "base-2")}
    plain, keyed = produce_both(client, topic)
    ledger = Ledger()

    drain(client, topic, readers, ledger)

    assert_exactly_once(ledger, plain + keyed)
    first, second = ledger.by("base-1"), ledger.by("base-2")
    assert first and second and not first & second  # both took a share, none twice
    assert first | second == set(plain + keyed)
    assert readers["base-1"].poll(ledger.handler("base-1"), block_ms=20) == 0  # BLOCK path


def test_after_close_lane_later_lane_messages_go_to_the_baseline(
        client: redis.Redis, broker: RedisLaneBroker, topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    readers = consumers(client, topic, monkeypatch)
    detail = broker.open_lane(LANE, [topic], MessagePolicy.LANE_CONSUME)
    _, while_open = produce_both(client, topic)
    ledger = Ledger()
    drain(client, topic, readers, ledger)
    assert ledger.by("lane") == set(while_open)

    broker.close_lane(detail)
    plain, after = produce_both(client, topic)
    lane_reader = readers.pop("lane")
    with pytest.raises(LaneGroupMissingError, match=f"{topic}-{LANE}"):
        lane_reader.poll(ledger.handler("lane"), block_ms=0)
    drain(client, topic, readers, ledger)

    assert_exactly_once(ledger, while_open + plain + after)
    assert ledger.by("lane") == set(while_open)
    assert set(after) <= ledger.by("base")


def test_a_lagging_baseline_splits_exactly_where_the_lane_opened_and_closed(
        client: redis.Redis, broker: RedisLaneBroker, topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline reads nothing until the lane has come and gone: which side handles a
    message depends on when it was produced, not on when it is read."""
    readers = consumers(client, topic, monkeypatch)
    lane_reader = readers.pop("lane")
    _, before = produce_both(client, topic)
    detail = broker.open_lane(LANE, [topic], MessagePolicy.LANE_CONSUME)
    _, during = produce_both(client, topic)
    ledger = Ledger()
    drain(client, topic, {"lane": lane_reader}, ledger)
    broker.close_lane(detail)
    _, after = produce_both(client, topic)

    drain(client, topic, readers, ledger)

    assert_exactly_once(ledger, before + during + after)
    assert ledger.by("lane") == set(during)
    assert ledger.by("base") >= set(before + after)
    assert not ledger.by("base") & set(during)


def test_a_handler_that_fails_gets_its_message_again(client: redis.Redis,
                                                     topic: str) -> None:
    reader = LaneConsumer(client, topic, BASELINE_GROUP, "base-1")
    ids = [produce(client, topic, {"n": str(index)}) for index in range(5)]
    attempts: dict[str, int] = defaultdict(int)
    done: list[str] = []

    def flaky(message: LaneMessage) -> None:
        attempts[message.id] += 1
        if message.id == ids[2] and attempts[message.id] == 1:
            raise RuntimeError("handler crashed")
        done.append(message.id)

    with pytest.raises(RuntimeError, match="handler crashed"):
        reader.poll(flaky, count=10, block_ms=0)
    # Like a restart: a new consumer object with the same name finds its pending messages.
    again = LaneConsumer(client, topic, BASELINE_GROUP, "base-1")
    for _ in range(MAX_ROUNDS):
        if again.poll(flaky, count=10, block_ms=0) == 0 and len(done) == len(ids):
            break
    assert sorted(done) == sorted(ids) and len(done) == len(set(done))
    assert attempts[ids[2]] == 2
    assert client.xpending(topic, BASELINE_GROUP)["pending"] == 0


def test_a_lane_consumer_never_creates_its_group(client: redis.Redis, topic: str) -> None:
    produce(client, topic, {"n": "1"}, lane=LANE)
    reader = LaneConsumer(client, topic, f"{topic}-{LANE}", "lane-1", LANE)
    with pytest.raises(LaneGroupMissingError, match="not open"):
        reader.poll(lambda message: None, block_ms=0)
    assert [group["name"] for group in client.xinfo_groups(topic)] == []


def test_produce_keys_lane_messages_and_refuses_the_key_as_a_field(client: redis.Redis,
                                                                   topic: str) -> None:
    keyed = produce(client, topic, {"order": "7"}, lane=LANE)
    plain = produce(client, topic, {"order": "8"})
    assert client.xrange(topic) == [(keyed, {"order": "7", LANE_FIELD: LANE}),
                                    (plain, {"order": "8"})]
    with pytest.raises(ValueError, match="lane="):
        produce(client, topic, {LANE_FIELD: LANE})


def test_the_group_variable_is_the_one_slipway_sets_in_a_lanes_containers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = "order.created-v2"
    resources = LaneResources(cast(Any, None), cast(Any, None), lambda name: "",
                              lane_settings=LaneSettings(lane_topics=[topic]))
    env = Environment(app_id=1, env_type="test", cluster="local", lb_port=1)
    variables = resources._want(LANE, "shop", "shop:1", env, 1).env_vars

    assert variables[group_env_var(topic)] == f"{topic}-{LANE}"
    assert group_for(topic, BASELINE_GROUP) == BASELINE_GROUP
    monkeypatch.setenv(group_env_var(topic), variables[group_env_var(topic)])
    assert group_for(topic, BASELINE_GROUP) == f"{topic}-{LANE}"


def test_from_env_picks_the_lane_consumer_only_where_the_topic_is_dyed(
        client: redis.Redis, broker: RedisLaneBroker, topic: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    broker.open_lane(LANE, [topic], MessagePolicy.LANE_CONSUME)
    monkeypatch.setenv("SLIPWAY_LANE", LANE)
    undyed = LaneConsumer.from_env(client, topic, BASELINE_GROUP, "c1")
    assert (undyed.lane, undyed.group) == ("", BASELINE_GROUP)
    monkeypatch.setenv(group_env_var(topic), f"{topic}-{LANE}")
    dyed = LaneConsumer.from_env(client, topic, BASELINE_GROUP, "c1")
    assert (dyed.lane, dyed.group) == (LANE, f"{topic}-{LANE}")
