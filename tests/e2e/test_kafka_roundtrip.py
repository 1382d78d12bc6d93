"""The stack's broker is a real Kafka: what is produced with acks=all comes back in order."""

from __future__ import annotations

import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.producer.message_accumulator import BatchBuilder

from tests.conftest import Stack
from tests.kafka import new_prefix, read_all
from worker.core.messages import OutgoingMessage
from worker.messaging.clients import make_producer
from worker.messaging.sender import Sender
from worker.settings import Settings


async def test_produced_records_come_back_in_order_with_keys_and_headers(
    stack: Stack, producer: AIOKafkaProducer
) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()

    for i in range(20):
        await producer.send(topic, f"v{i}".encode(), key=b"k", headers=[("n", str(i).encode())])
    await producer.flush()

    records = await read_all(stack.kafka_bootstrap, topic, at_least=20)
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(20)]
    assert {r.key for r in records} == {b"k"}
    assert [dict(r.headers)["n"] for r in records] == [str(i).encode() for i in range(20)]


async def test_a_partitions_results_go_to_the_broker_in_one_producer_batch(stack: Stack) -> None:
    # The worker's producer (make_producer) through the Sender, as the consume loop publishes a
    # batch: 400 results of about 450 bytes for one partition fit one producer batch, which
    # goes in one request. At aiokafka's default batch size (16 KiB) they took twelve, each
    # handed over only once the one before was in a request.
    prefix = new_prefix()
    topic = prefix + "coins.credited"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    settings = Settings.model_validate(
        {
            "database_url": "postgresql://x@127.0.0.1/x",
            "kafka_bootstrap_servers": stack.kafka_bootstrap,
        }
    )
    handed_over: list[int] = []

    def new_producer() -> AIOKafkaProducer:
        producer = make_producer(settings, linger_ms=0)
        send_batch = producer.send_batch

        async def counted(batch: BatchBuilder, topic: str, *, partition: int) -> Any:
            handed_over.append(batch.record_count())
            return await send_batch(batch, topic, partition=partition)

        producer.send_batch = counted  # type: ignore[method-assign]
        return producer

    values = [f"{i:04d}".encode() + b"x" * 446 for i in range(400)]
    sender = Sender(new_producer, topic_prefix=prefix, topics=["coins.credited"])
    await sender.start()
    try:
        refused = await sender.send([OutgoingMessage("coins.credited", b"s-1", v) for v in values])
    finally:
        await sender.close()

    assert refused == {}
    assert handed_over == [400]
    records = await read_all(stack.kafka_bootstrap, topic, at_least=400)
    assert [r.value for r in records] == values
