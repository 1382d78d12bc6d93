"""The outbox relay over a fake outbox and fake producers: what is published, parked, re-sent.

A refused message breaks the idempotent producer's sequence, so the relay closes that producer,
sends what was not taken again alone with a new one, and parks only what is refused alone. A
passing fault rolls the chunk back whole.
"""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    CorruptRecordException,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import CollectorRegistry

from tests.unit.fakes import FakeBroker, FakeOutbox, Sent
from worker.core.messages import Headers, OutgoingMessage
from worker.errors import is_retriable
from worker.messaging.outbox import OutboxRelay
from worker.messaging.sender import Sender
from worker.metrics import Metrics

PREFIX = "dev."
HEADERS: Headers = (("content-type", b"application/cloudevents+json"), ("a\x00b", None))


def message(value: bytes, topic: str = "coins.credited") -> OutgoingMessage:
    return OutgoingMessage(topic, b"stu-1", value, HEADERS)


async def started_relay(
    outbox: FakeOutbox, broker: FakeBroker, metrics: Metrics | None = None, chunk: int = 1000
) -> OutboxRelay:
    sender = Sender(broker.new_producer, topic_prefix=PREFIX)
    await sender.start()
    return OutboxRelay(
        outbox, sender, metrics or Metrics(CollectorRegistry()), chunk=chunk, busy_seconds=0.001
    )


def values(sent: list[Sent]) -> list[bytes | None]:
    return [s.value for s in sent]


def published(metrics: Metrics, topic: str) -> float | None:
    return metrics.registry.get_sample_value("payment_worker_published_total", {"topic": topic})


async def test_a_chunk_goes_out_in_queue_order_with_prefix_and_headers_then_is_forgotten() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2", "coins.debited"), message(b"v3")])
    metrics = Metrics(CollectorRegistry())
    broker = FakeBroker()
    relay = await started_relay(outbox, broker, metrics)

    assert await relay.publish_once() == 3

    # In queue order within each topic (Kafka orders a partition, not topics against each other).
    assert [s for s in broker.taken if s.topic == "dev.coins.credited"] == [
        Sent("dev.coins.credited", b"stu-1", b"v1", list(HEADERS), 0),
        Sent("dev.coins.credited", b"stu-1", b"v3", list(HEADERS), 0),
    ]
    assert [s for s in broker.taken if s.topic == "dev.coins.debited"] == [
        Sent("dev.coins.debited", b"stu-1", b"v2", list(HEADERS), 0),
    ]
    assert outbox.queued == []
    assert outbox.parked == {}
    assert published(metrics, "coins.credited") == 2
    assert published(metrics, "coins.debited") == 1
    assert await relay.publish_once() == 0


async def test_a_chunk_is_taken_only_by_the_publisher_and_drain_waits_its_turn() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2")])
    outbox.busy_claims = 2  # another relay holds the publisher lock twice more
    broker = FakeBroker()
    relay = await started_relay(outbox, broker)

    assert await relay.publish_once() is None
    assert broker.taken == []
    assert len(outbox.queued) == 2

    await relay.drain()
    assert values(broker.taken) == [b"v1", b"v2"]
    assert outbox.queued == []


@pytest.mark.parametrize(("queued", "claims"), [(5, 3), (4, 3), (1, 1), (0, 1)])
async def test_drain_stops_at_the_first_chunk_shorter_than_the_limit(
    queued: int, claims: int
) -> None:
    outbox = FakeOutbox([message(b"v%d" % n) for n in range(queued)])
    broker = FakeBroker()
    relay = await started_relay(outbox, broker, chunk=2)

    await relay.drain()

    assert len(broker.taken) == queued
    assert outbox.queued == []
    # A short chunk took everything committed when it was claimed: no empty pass after it.
    assert outbox.claims == claims


async def test_a_message_for_a_topic_the_cluster_lacks_is_parked_and_the_rest_go_out() -> None:
    # A parked message re-driven after its topic was deleted, or of a type this version no
    # longer publishes: waiting for the topic would hold back everything behind it for ever.
    outbox = FakeOutbox([message(b"v1"), message(b"v2", "gone.type"), message(b"v3")])
    [_, gone_seq, _] = [m.seq for m in outbox.queued]
    broker = FakeBroker(missing={"dev.gone.type"})
    sender = Sender(broker.new_producer, topic_prefix=PREFIX, topics=("coins.credited",))
    await sender.start()
    relay = OutboxRelay(outbox, sender, Metrics(CollectorRegistry()))

    assert await relay.publish_once() == 3

    assert values(broker.taken) == [b"v1", b"v3"]
    assert outbox.queued == []
    assert list(outbox.parked) == [gone_seq]
    assert "dev.gone.type does not exist" in str(outbox.parked[gone_seq])


async def test_a_topic_unknown_while_no_broker_answers_is_a_passing_fault() -> None:
    # aiokafka's metadata wait ends the same way in an outage: that is no verdict on the topic.
    outbox = FakeOutbox([message(b"v1", "retired.type")])
    broker = FakeBroker()
    sender = Sender(broker.new_producer, topic_prefix=PREFIX, topics=("coins.credited",))
    await sender.start()
    relay = OutboxRelay(outbox, sender, Metrics(CollectorRegistry()))
    broker.unreachable = True

    with pytest.raises(UnknownTopicOrPartitionError) as raised:
        await relay.publish_once()
    assert is_retriable(raised.value)
    assert outbox.parked == {}

    broker.unreachable = False  # back: it answers that the topic does not exist
    broker.missing.add("dev.retired.type")
    assert await relay.publish_once() == 1
    [(_, why)] = outbox.parked.items()
    assert str(why).endswith("topic dev.retired.type does not exist")


async def test_one_of_the_senders_own_topics_missing_is_a_passing_fault() -> None:
    # The deployment's fault, not the message's: it waits for the operator, parking nothing.
    outbox = FakeOutbox([message(b"v1")])
    broker = FakeBroker()
    sender = Sender(broker.new_producer, topic_prefix=PREFIX, topics=("coins.credited",))
    await sender.start()
    broker.missing.add("dev.coins.credited")  # deleted since the worker started
    relay = OutboxRelay(outbox, sender, Metrics(CollectorRegistry()))

    with pytest.raises(UnknownTopicOrPartitionError) as raised:
        await relay.publish_once()
    assert is_retriable(raised.value)
    assert len(outbox.queued) == 1
    assert outbox.parked == {}


async def test_a_refused_message_is_parked_alone_and_the_rest_go_out_on_new_producers() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2"), message(b"v3"), message(b"v4")])
    [_, refused_seq, *_] = [m.seq for m in outbox.queued]
    metrics = Metrics(CollectorRegistry())
    broker = FakeBroker(refuses={b"v2": CorruptRecordException()})
    relay = await started_relay(outbox, broker, metrics)

    assert await relay.publish_once() == 4

    # The broker held no sequence of producer 0 on the partition, and would have taken a batch
    # behind a refused one: so producer 0's first batch (v1 to v3) went alone, and was refused
    # for v2; v4 was never handed over. Each then went alone, in order: v1 on producer 1; v2
    # refused again (parked, and producer 1's sequence broke); v3 and v4 on producer 2.
    assert [(s.value, s.producer) for s in broker.taken] == [(b"v1", 1), (b"v3", 2), (b"v4", 2)]
    assert [(p.started, p.stopped) for p in broker.producers] == [
        (True, True), (True, True), (True, False),
    ]  # fmt: skip
    assert outbox.queued == []
    assert list(outbox.parked) == [refused_seq]
    assert isinstance(outbox.parked[refused_seq], CorruptRecordException)
    assert metrics.registry.get_sample_value("payment_worker_parked_total") == 1
    assert published(metrics, "coins.credited") == 3


async def test_a_broken_producer_is_replaced_and_what_it_did_not_send_is_sent_again() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2")])
    broker = FakeBroker()
    relay = await started_relay(outbox, broker)
    broker.producers[0].broken = True  # its sequence broke (or it was fenced) since it started

    assert await relay.publish_once() == 2

    assert [(s.value, s.producer) for s in broker.taken] == [(b"v1", 1), (b"v2", 1)]
    assert [p.stopped for p in broker.producers] == [True, False]
    assert outbox.queued == []
    assert outbox.parked == {}


async def test_a_message_send_itself_refuses_is_parked_without_holding_back_the_others() -> None:
    huge = b"h" * 10_000  # large enough to go by `send`, whose size check refuses it
    outbox = FakeOutbox([message(b"v1"), message(huge), message(b"v3")])
    huge_seq = outbox.queued[1].seq
    broker = FakeBroker(too_large=[huge])
    relay = await started_relay(outbox, broker)

    assert await relay.publish_once() == 3

    # `send` refused it before the broker saw it: v1 had gone before it, and v3, behind it on
    # its partition, went alone after it was tried alone again (a new producer after each
    # refusal), so that nothing overtakes it should it be taken then.
    assert [(s.value, s.producer) for s in broker.taken] == [(b"v1", 0), (b"v3", 2)]
    assert list(outbox.parked) == [huge_seq]
    assert isinstance(outbox.parked[huge_seq], MessageSizeTooLargeError)
    assert outbox.queued == []


async def test_a_passing_fault_rolls_the_chunk_back_whole() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2"), message(b"v3")])
    queued = list(outbox.queued)
    metrics = Metrics(CollectorRegistry())
    broker = FakeBroker(refuses={b"v2": KafkaTimeoutError()})
    relay = await started_relay(outbox, broker, metrics)

    with pytest.raises(KafkaTimeoutError):
        await relay.publish_once()

    assert outbox.queued == queued  # nothing forgotten: all of it is sent again later
    assert outbox.parked == {}
    assert len(broker.producers) == 1  # no message was refused for good: none sent alone
    assert published(metrics, "coins.credited") is None


async def test_backlog_sets_the_queued_and_parked_gauges() -> None:
    outbox = FakeOutbox([message(b"v1"), message(b"v2"), message(b"v3")])
    outbox.parked[99] = CorruptRecordException()
    metrics = Metrics(CollectorRegistry())
    relay = await started_relay(outbox, FakeBroker(), metrics)

    assert await relay.backlog() == 3

    assert metrics.registry.get_sample_value("payment_worker_outbox_backlog") == 3
    assert metrics.registry.get_sample_value("payment_worker_parked_messages") == 1
