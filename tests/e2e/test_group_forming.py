"""Worker consumers starting at once form their group at once, every time (a real broker)."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.conftest import Stack
from tests.kafka import new_prefix
from worker.core.topics import INPUT_TOPICS
from worker.messaging.clients import make_consumer
from worker.settings import Settings


async def test_consumers_starting_together_form_their_group_every_time(stack: Stack) -> None:
    # Consumers offering two assignors rebalanced without end in 4 of 6 such starts on Kafka
    # 4.4 (aiokafka 0.14): `start()` never returned. Five starts in a row would all have to
    # be lucky for that to pass.
    for _ in range(5):
        prefix = new_prefix()
        topics = [prefix + t for t in INPUT_TOPICS]
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, 6, 1) for t in topics])
        finally:
            await admin.close()
        settings = Settings(
            kafka_bootstrap_servers=stack.kafka_bootstrap,
            kafka_consumer_group=prefix + "group",
            kafka_topic_prefix=prefix,
        )
        consumers = [make_consumer(settings) for _ in range(2)]
        for consumer in consumers:
            consumer.subscribe(topics)
        try:
            # Formed: each holds partitions, and together exactly all of them (while a rebalance
            # is under way one may still hold what the other was just given).
            async with asyncio.timeout(30):
                await asyncio.gather(*(c.start() for c in consumers))
                while not (
                    all(c.assignment() for c in consumers)
                    and sum(len(c.assignment()) for c in consumers) == len(topics) * 6
                ):
                    await asyncio.gather(*(c.getmany(timeout_ms=100) for c in consumers))
        finally:
            for consumer in consumers:
                await consumer.stop()
