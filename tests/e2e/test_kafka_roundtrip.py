"""The stack's broker is a real Kafka: what is produced with acks=all comes back in order."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder

from tests.conftest import Stack
from tests.kafka import create_topic, new_prefix, read_all
from worker.core.messages import OutgoingMessage
from worker.core.topics import ALL_TOPICS, with_prefix
from worker.messaging.clients import ensure_topics, make_producer
from worker.messaging.sender import Sender
from worker.settings import Settings


async def test_produced_records_come_back_in_order_with_keys_and_headers(
    stack: Stack, producer: AIOKafkaProducer
) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:10]}"
    await create_topic(stack.kafka_bootstrap, topic)

    for i in range(20):
        await producer.send(topic, f"v{i}".encode(), key=b"k", headers=[("n", str(i).encode())])
    await producer.flush()

    records = await read_all(stack.kafka_bootstrap, topic, at_least=20)
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(20)]
    assert {r.key for r in records} == {b"k"}
    assert [dict(r.headers)["n"] for r in records] == [str(i).encode() for i in range(20)]


def settings_for(stack: Stack, prefix: str) -> Settings:
    return Settings.model_validate(
        {
            "database_url": "postgresql://x@127.0.0.1/x",
            "kafka_bootstrap_servers": stack.kafka_bootstrap,
            "kafka_topic_prefix": prefix,
        }
    )


def counting_sender(settings: Settings, handed_over: list[int]) -> Sender:
    """The worker's producer (make_producer) through the Sender, as the consume loop publishes
    a batch, noting how many messages each producer batch it hands over holds."""

    def new_producer() -> AIOKafkaProducer:
        producer = make_producer(settings, linger_ms=0)
        send_batch = producer.send_batch

        async def counted(batch: BatchBuilder, topic: str, *, partition: int) -> Any:
            handed_over.append(batch.record_count())
            return await send_batch(batch, topic, partition=partition)

        producer.send_batch = counted  # type: ignore[method-assign]
        return producer

    return Sender(new_producer, topic_prefix=settings.kafka_topic_prefix, topics=["coins.credited"])


async def send_all(sender: Sender, values: list[bytes]) -> dict[int, Exception]:
    await sender.start()
    try:
        return await sender.send([OutgoingMessage("coins.credited", b"s-1", v) for v in values])
    finally:
        await sender.close()


LIMIT = "max.message.bytes"
VALUES = [f"{i:04d}".encode() + b"x" * 446 for i in range(400)]  # about 450 bytes, as results


async def test_a_partitions_results_go_to_the_broker_in_one_producer_batch(stack: Stack) -> None:
    # 400 results for one partition fit one producer batch, which goes in one request. At
    # aiokafka's default batch size (16 KiB) they took twelve, each handed over only once the
    # one before was in a request.
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited")
    handed_over: list[int] = []

    refused = await send_all(counting_sender(settings_for(stack, prefix), handed_over), VALUES)

    assert refused == {}
    assert handed_over == [400]
    records = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=400)
    assert [r.value for r in records] == VALUES


async def test_a_topic_refusing_a_batch_still_gets_every_message_in_order(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # A topic whose max.message.bytes is below the batch (185 KB here) refuses it whole: each
    # message then goes again alone, in order, and the refusal is logged with its reason.
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", **{LIMIT: "65536"})
    handed_over: list[int] = []

    with caplog.at_level(logging.WARNING, logger="worker.messaging.sender"):
        refused = await send_all(counting_sender(settings_for(stack, prefix), handed_over), VALUES)

    assert refused == {}
    assert handed_over == [400]
    records = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=400)
    assert [r.value for r in records] == VALUES
    [said] = said_of(caplog, "batch_refused", prefix)
    assert (said.levelname, getattr(said, "error", None)) == ("WARNING", "MessageSizeTooLargeError")


async def test_a_large_message_never_joins_the_producer_batch_before_it(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    # A message above the batched size goes by `send`, in its place. The topic takes the small
    # messages' batch and the large one each alone, but not both in one batch: had the large
    # one joined the batch still queued before it, the broker would refuse them together.
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", **{LIMIT: "14000"})
    sender = counting_sender(settings_for(stack, prefix), [])
    small = [f"s{i}".encode() * 500 for i in range(3)]  # 1,000 bytes each: 3 KB together
    large = b"L" * 12_000  # batched up to 8 KiB; alone about 12.1 KB, with the three 15.1 KB
    await sender.start()
    try:
        first = await sender.send([OutgoingMessage("coins.credited", b"s-1", v) for v in small])
        # Now the broker holds the producer's sequence: the next batch is not awaited alone
        # before the large message is handed over.
        with caplog.at_level(logging.WARNING, logger="worker.messaging.sender"):
            again = [*small, large, *small]
            second = await sender.send(
                [OutgoingMessage("coins.credited", b"s-1", v) for v in again]
            )
    finally:
        await sender.close()

    assert (first, second) == ({}, {})
    assert said_of(caplog, "batch_refused", prefix) == []
    records = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=9)
    assert [r.value for r in records] == [*small, *small, large, *small]


async def test_the_start_warns_of_a_result_topic_refusing_the_producers_batches(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", **{LIMIT: "65536"})
    await create_topic(stack.kafka_bootstrap, prefix + "coins.debited")  # the broker's default
    await create_topic(stack.kafka_bootstrap, prefix + "course.completed", **{LIMIT: "65536"})

    with caplog.at_level(logging.WARNING, logger="worker.messaging.clients"):
        await ensure_topics(settings_for(stack, prefix), with_prefix(prefix, ALL_TOPICS))

    [said] = said_of(caplog, "check_topics", prefix)
    assert getattr(said, "topic", None) == prefix + "coins.credited"
    assert "max.message.bytes=65536, below the 262144 bytes" in said.getMessage()


def said_of(caplog: pytest.LogCaptureFixture, action: str, prefix: str) -> list[logging.LogRecord]:
    """The records of `action` about this test's topics (`prefix`) alone."""
    return [
        r
        for r in caplog.records
        if getattr(r, "action", None) == action and getattr(r, "topic", "").startswith(prefix)
    ]
