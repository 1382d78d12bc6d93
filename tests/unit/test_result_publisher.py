"""Results published straight from memory (`ResultPublisher`) over fake producers: in order,
a passing fault sent again whole, a message refused for good parked without the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka.errors import CorruptRecordException, KafkaTimeoutError, MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from tests.unit.fakes import FakeBroker
from worker.core.messages import OutgoingMessage
from worker.messaging.publish import ResultPublisher
from worker.messaging.sender import Sender
from worker.metrics import Metrics


class Parking:
    def __init__(self) -> None:
        self.parked: list[tuple[OutgoingMessage, Exception]] = []

    async def park(self, refused: Sequence[tuple[OutgoingMessage, Exception]]) -> None:
        self.parked += refused


def message(value: bytes, topic: str = "coins.credited") -> OutgoingMessage:
    return OutgoingMessage(topic, b"stu-1", value, (("content-type", b"application/json"),))


async def publisher(broker: FakeBroker, parking: Parking, metrics: Metrics) -> ResultPublisher:
    sender = Sender(broker.new_producer, topic_prefix="dev.")
    await sender.start()
    return ResultPublisher(sender, parking, metrics)


def published(metrics: Metrics, topic: str) -> float | None:
    return metrics.registry.get_sample_value("payment_worker_published_total", {"topic": topic})


async def test_messages_go_out_in_order_with_the_prefix_and_are_counted_by_topic() -> None:
    broker, parking, metrics = FakeBroker(batch_size=2), Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish(
        [message(b"v1"), message(b"v2", "dlq"), message(b"v3"), message(b"v4"), message(b"v5")]
    )

    # In order within each topic (Kafka orders a partition, not the topics against each other),
    # across as many producer batches as it takes.
    assert [s.value for s in broker.taken if s.topic == "dev.coins.credited"] == [
        b"v1", b"v3", b"v4", b"v5",
    ]  # fmt: skip
    assert [s.value for s in broker.taken if s.topic == "dev.dlq"] == [b"v2"]
    assert broker.taken[0].headers == [("content-type", b"application/json")]
    assert published(metrics, "coins.credited") == 4
    assert published(metrics, "dlq") == 1
    assert parking.parked == []


async def test_a_message_refused_for_good_is_parked_and_the_rest_go_out_in_order() -> None:
    broker = FakeBroker(refuses={b"v2": CorruptRecordException()})
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish([message(b"v1"), message(b"v2"), message(b"v3")])

    assert [s.value for s in broker.taken] == [b"v1", b"v3"]
    assert [(m.value, type(e)) for m, e in parking.parked] == [(b"v2", CorruptRecordException)]
    assert metrics.registry.get_sample_value("payment_worker_parked_total") == 1
    assert published(metrics, "coins.credited") == 2


async def test_a_passing_fault_sends_them_all_again_and_parks_nothing() -> None:
    # One message per producer batch, so that some are taken around the fault.
    broker = FakeBroker(refuses_once={b"v2": KafkaTimeoutError()}, batch_size=1)
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish([message(b"v1"), message(b"v2"), message(b"v3")])

    # v1 was taken; v2's batch expired, which left a gap in the sequence the broker held, so
    # the batches after it failed, and so did the whole send again on that producer: every
    # message then went alone, in order, on a new one. A repeat has the same id.
    assert [(s.value, s.producer) for s in broker.taken] == [
        (b"v1", 0), (b"v1", 1), (b"v2", 1), (b"v3", 1),
    ]  # fmt: skip
    assert parking.parked == []
    assert published(metrics, "coins.credited") == 3


async def test_nothing_to_publish_sends_nothing() -> None:
    broker = FakeBroker()
    results = await publisher(broker, Parking(), Metrics(CollectorRegistry()))
    await results.publish([])
    assert broker.taken == []


async def test_a_large_message_goes_by_send_in_its_place_and_its_size_limit_holds() -> None:
    large, too_large = b"L" * 10_000, b"T" * 10_000
    broker = FakeBroker(too_large=[too_large])
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish(
        [message(b"v1"), message(large), message(b"v3"), message(too_large), message(b"v5")]
    )

    # Not in a batch, where the producer's own size check would not judge it: `send` took the
    # large one between the batches around it and refused the one above its limit alone.
    assert [s.value for s in broker.taken] == [b"v1", large, b"v3", b"v5"]
    assert len(broker.producers) == 3  # a new one to send it alone, another after its refusal
    assert [(m.value, type(e)) for m, e in parking.parked] == [
        (too_large, MessageSizeTooLargeError)
    ]


# Kafka's own test vectors of its Java clients' murmur2 (UtilsTest), as signed 32-bit ints: a
# result goes to the partition any Kafka client would choose for its key.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"abc": 479470107,
}


async def test_each_result_goes_to_the_partition_kafka_clients_choose_for_its_key() -> None:
    broker, parking, metrics = FakeBroker(partitions=6), Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    sent = [OutgoingMessage("coins.credited", key, key + b"#" + bytes([n]), ())
            for n in range(2) for key in JAVA_MURMUR2]  # fmt: skip
    await results.publish(sent)

    for key, hashed in JAVA_MURMUR2.items():
        found = [s for s in broker.taken if s.key == key]
        assert {s.partition for s in found} == {(hashed & 0x7FFFFFFF) % 6}
        assert [s.value for s in found] == [key + b"#\x00", key + b"#\x01"]


async def test_a_long_key_goes_where_the_default_partitioner_sends_it_too() -> None:
    # Keys above 64 bytes (a dead letter keeps its record's) are hashed each time, not kept.
    broker, parking, metrics = FakeBroker(partitions=6), Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)
    keys = [bytes([n]) * length for n in range(1, 4) for length in (64, 65, 5_000)]

    await results.publish([OutgoingMessage("coins.credited", key, b"v", ()) for key in keys])

    every = list(range(6))
    assert sorted((s.key, s.partition) for s in broker.taken) == sorted(
        (key, DefaultPartitioner()(key, every, every)) for key in keys
    )


async def test_every_result_of_one_publish_has_one_create_time() -> None:
    # Timestamps never run backwards in decision order, across topics and partitions too.
    broker, parking, metrics = FakeBroker(partitions=6), Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish(
        [message(b"v1"), message(b"v2", "coins.debited"), message(b"L" * 10_000), message(b"v4")]
    )

    assert len(broker.taken) == 4
    assert len({s.timestamp for s in broker.taken}) == 1
    assert broker.taken[0].timestamp is not None


async def test_a_message_the_client_cannot_encode_is_parked_and_the_rest_keep_their_order() -> None:
    broker = FakeBroker(unencodable=[b"bad"])
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish([message(b"v1"), message(b"bad"), message(b"v3")])

    assert [s.value for s in broker.taken] == [b"v1", b"v3"]
    assert [m.value for m, _ in parking.parked] == [b"bad"]


async def test_after_a_refusal_where_the_broker_holds_the_sequence_the_rest_follow_in_order() -> (
    None
):
    broker = FakeBroker(refuses={b"v5": CorruptRecordException()}, batch_size=2)
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)
    await results.publish([message(b"v1"), message(b"v2")])  # the broker holds its sequence now

    await results.publish([message(f"v{n}".encode()) for n in range(3, 8)])

    # v3 and v4 went in one batch; v5's batch (with v6) was refused, and the batch behind it
    # (v7) failed on the broken sequence: v5, v6 and v7 went alone, in order, v5 refused again.
    assert [s.value for s in broker.taken] == [b"v1", b"v2", b"v3", b"v4", b"v6", b"v7"]
    assert [m.value for m, _ in parking.parked] == [b"v5"]


async def test_keyless_and_large_messages_go_by_send_in_their_place() -> None:
    broker, parking, metrics = FakeBroker(), Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)
    large_headers = (("x-error", b"e" * 10_000),)

    await results.publish([
        message(b"v1"),
        OutgoingMessage("coins.credited", None, b"keyless", ()),
        OutgoingMessage("coins.credited", b"stu-1", b"v3", large_headers),
        message(b"v4"),
    ])  # fmt: skip

    # `send` judges their size and, for the keyless one, picks a partition with a leader.
    assert {s.value: s.via for s in broker.taken} == {
        b"v1": "batch", b"keyless": "send", b"v3": "send", b"v4": "batch",
    }  # fmt: skip
    assert [s.value for s in broker.taken if s.key == b"stu-1"] == [b"v1", b"v3", b"v4"]


async def test_messages_sent_alone_keep_the_create_time_of_their_send() -> None:
    broker = FakeBroker(refuses={b"v2": CorruptRecordException()}, batch_size=1)
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)

    await results.publish([message(b"v1"), message(b"v2"), message(b"v3"), message(b"v4")])

    assert [s.value for s in broker.taken] == [b"v1", b"v3", b"v4"]
    assert len({s.timestamp for s in broker.taken}) == 1


async def test_publishes_at_once_take_turns_so_a_producer_replaced_for_one_spares_the_other() -> (
    None
):
    # Two consume lanes publish at once; one's refused message makes the sender replace the
    # producer, which must not be pulled from under the other's batches, still being handed over.
    broker = FakeBroker(refuses={b"a2": CorruptRecordException()}, batch_size=1)
    parking, metrics = Parking(), Metrics(CollectorRegistry())
    results = await publisher(broker, parking, metrics)
    lane_a = [message(b"a1"), message(b"a2"), message(b"a3")]
    lane_b = [message(b"b%d" % n, topic="coins.debited") for n in range(50)]

    await asyncio.gather(results.publish(lane_a), results.publish(lane_b))

    assert [s.value for s in broker.taken if s.value.startswith(b"a")] == [b"a1", b"a3"]
    assert [m.value for m, _ in parking.parked] == [b"a2"]
    theirs = [s for s in broker.taken if s.value.startswith(b"b")]
    assert [s.value for s in theirs] == [m.value for m in lane_b]  # each once, in order
    # ... all in producer batches of one producer: none was refused, so none went alone.
    assert {(s.via, s.producer) for s in theirs} == {("batch", theirs[0].producer)}
    assert published(metrics, "coins.debited") == 50
