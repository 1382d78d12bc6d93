"""`payment-worker send`: put one event on the worker's topics, as another service would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from worker.core import cloudevents
from worker.messaging.clients import connection, partitions_of
from worker.settings import Settings


async def send_event(settings: Settings, event_type: str, data: dict[str, Any], key: str) -> str:
    """Send `data` as a structured CloudEvent of `event_type`, keyed by `key`; returns the id."""
    topic = settings.kafka_topic_prefix + event_type
    if topic not in await partitions_of(settings, [topic]):
        raise LookupError(
            f"there is no topic {topic}: start a worker first (it creates its topics), or check "
            "KAFKA_TOPIC_PREFIX"
        )
    event_id = str(uuid.uuid4())
    value = cloudevents.structured(
        event_id=event_id,
        event_type=event_type,
        source="payment-worker-cli",
        subject=key,
        time=datetime.now(UTC),
        data=data,
    )
    producer = AIOKafkaProducer(**connection(settings), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            value,
            key=key.encode(),
            headers=cloudevents.structured_headers(),
        )
    finally:
        await producer.stop()
    return event_id


def parse_data(text: str) -> dict[str, Any]:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("event data must be a JSON object")  # noqa: TRY004 - bad input, not a bug
    return data
