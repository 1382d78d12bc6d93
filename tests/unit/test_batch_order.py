"""A consumed batch is applied in record-timestamp order, each partition keeping its own order.

Which records share a batch is up to the broker and the client, so this is checked on a batch
as aiokafka hands it over; that commands apply in the order given is the ledger's own test
(`test_coins.py::test_redemption_in_the_same_batch_sees_earlier_credits`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from worker.messaging.consume import in_timestamp_order


def record(topic: str, offset: int, timestamp: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic, 0, offset, timestamp, 0, b"s", b"v", None, 1, 1, []
    )  # fmt: skip


def test_a_redemption_produced_after_its_credits_comes_after_them() -> None:
    credits = TopicPartition("course.completed", 0)
    redemptions = TopicPartition("coins.redemption.requested", 0)
    batch = {
        redemptions: [record(redemptions.topic, 0, 30)],  # the consumer may list it first
        credits: [record(credits.topic, 7, 10), record(credits.topic, 8, 20)],
    }
    ordered = [(r.topic, r.offset) for r in in_timestamp_order(batch)]
    assert ordered == [(credits.topic, 7), (credits.topic, 8), (redemptions.topic, 0)]


def test_a_partition_keeps_its_order_whatever_its_timestamps() -> None:
    # Producers' clocks may step back: a partition's order is Kafka's, never re-sorted.
    one = TopicPartition("course.completed", 0)
    other = TopicPartition("referral.succeeded", 0)
    batch = {
        one: [record(one.topic, 0, 50), record(one.topic, 1, 10)],
        other: [record(other.topic, 0, 20)],
    }
    ordered = [(r.topic, r.offset) for r in in_timestamp_order(batch)]
    assert [o for t, o in ordered if t == one.topic] == [0, 1]
    assert ordered[0] == (other.topic, 0)  # 20 is before the head of the other partition (50)


def test_a_record_carries_the_brokers_append_time_only_where_the_topic_keeps_it() -> None:
    appended = ConsumerRecord(
        "payment.webhook.received", 0, 5, 1_795_856_400_250, 1, b"p", b"v", None, 1, 1, []
    )  # fmt: skip
    [inbound] = in_timestamp_order({TopicPartition("payment.webhook.received", 0): [appended]})
    assert inbound.appended_at == datetime(2026, 11, 28, 9, 0, 0, 250_000, tzinfo=UTC)
    # CreateTime (0): the producer's choice, not the broker's time.
    [produced] = in_timestamp_order({TopicPartition("course.completed", 0): [record("c", 1, 9)]})
    assert produced.appended_at is None
