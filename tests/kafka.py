"""Reading what the worker published, straight from the broker."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import ConsumerRecord

from tests.support import eventually
from worker.messaging.clients import TOPIC_CONFIGS

# The topic prefixes the running test has used: its topics are deleted after it.
_PREFIXES: list[str] = []


def new_prefix(run: str | None = None) -> str:
    """A topic prefix of the test's own (`KAFKA_TOPIC_PREFIX`), deleted after the test."""
    prefix = f"t{run or uuid.uuid4().hex[:10]}."
    _PREFIXES.append(prefix)
    return prefix


async def delete_test_topics(bootstrap: str) -> None:
    """Delete the topics of every prefix handed out since the last call."""
    prefixes = tuple(_PREFIXES)
    _PREFIXES.clear()
    if not prefixes:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [name for name in await admin.list_topics() if name.startswith(prefixes)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def read_all(
    bootstrap: str, topic: str, *, at_least: int, within: float = 30
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` from the start, once at least `at_least` have arrived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def enough() -> None:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer._client.force_metadata_update()
            assert partitions, f"topic {topic} does not exist yet"
            if not consumer.assignment():
                consumer.assign([TopicPartition(topic, p) for p in partitions])
                await consumer.seek_to_beginning()
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for part in batch.values() for r in part)
            assert len(records) >= at_least, f"{len(records)} of {at_least} on {topic}"

        await eventually(enough, within=within, interval=0.05)
        return records
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition of `topic` (absent: none yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def keep_producer_time(bootstrap: str, env: Mapping[str, str]) -> None:
    """Create the topics the worker would stamp with the broker's append time (webhooks and
    privileged requests, `TOPIC_CONFIGS`) as plain topics that keep the producer's time.

    For fault tests whose oracle judges a webhook's signature age against the event's `time`,
    as the worker does where a topic keeps the producer's time: their streams are built before
    they are sent, and sent for minutes. The worker never changes an existing topic. The
    append-time rule has its own tests (tests/e2e/test_payments.py)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        prefix, partitions = env["KAFKA_TOPIC_PREFIX"], int(env["KAFKA_TOPIC_PARTITIONS"])
        await admin.create_topics([NewTopic(prefix + t, partitions, 1) for t in TOPIC_CONFIGS])
    finally:
        await admin.close()


async def create_topic(bootstrap: str, name: str, partitions: int = 1, **config: str) -> None:
    """Create topic `name` with `partitions` and the topic settings `config`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=config)])
    finally:
        await admin.close()
