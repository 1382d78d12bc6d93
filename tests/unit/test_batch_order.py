"""A consumed batch is applied in record-timestamp order, each partition keeping its own order.

Which records share a batch is up to the broker and the client, so this is checked on a batch
as aiokafka hands it over; that commands apply in the order given is the ledger's own test
(`test_coins.py::test_redemption_in_the_same_batch_sees_earlier_credits`).
"""

from __future__ import annotations

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
