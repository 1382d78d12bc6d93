"""The stack's broker is a real Kafka: what is produced with acks=all comes back in order."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import Stack
from tests.kafka import read_all


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
