"""A consumed Kafka record as the core sees it: bytes and coordinates, no client types."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worker.core.messages import Headers, OutgoingMessage
from worker.core.topics import DLQ_TOPIC


@dataclass(frozen=True, slots=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers

    @property
    def coordinates(self) -> dict[str, object]:
        """Where the record came from, for logs."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def dead_letter(record: InboundRecord, error: Exception, failed_at: datetime) -> OutgoingMessage:
    """The record byte for byte, for the dead-letter topic, with the CONTRACT's headers."""
    message = str(error).replace("\n", " ")[:1000]
    return OutgoingMessage(
        topic=DLQ_TOPIC,
        key=record.key,
        value=record.value,
        headers=(
            *record.headers,
            ("dlq.error.class", type(error).__name__.encode()),
            ("dlq.error.message", message.encode("utf-8", "replace")),
            ("dlq.source.topic", record.topic.encode()),
            ("dlq.source.partition", str(record.partition).encode()),
            ("dlq.source.offset", str(record.offset).encode()),
            ("dlq.failed.at", failed_at.isoformat().encode()),
        ),
    )
