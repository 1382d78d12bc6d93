"""A consumed Kafka record as the core sees it, and its copy for the dead-letter topic."""

from __future__ import annotations

from datetime import datetime

from worker.core.messages import (
    MAX_MESSAGE_BYTES,
    Headers,
    OutgoingMessage,
    headers_size,
    wire_size,
)
from worker.core.topics import DLQ_TOPIC
from worker.core.values import value_type

# Input headers with this prefix are dropped from a dead letter: only the worker says where and
# why a record failed (CONTRACT section 6). Compared without regard to case.
DLQ_HEADER_PREFIX = "dlq."


@value_type
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    # When the broker appended it, for a topic with message.timestamp.type=LogAppendTime; None
    # when the timestamp is the producer's (CreateTime), which any producer can set.
    appended_at: datetime | None = None

    @property
    def coordinates(self) -> dict[str, object]:
        """Where the record came from, for logs."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


def dead_letter(
    record: InboundRecord,
    error: BaseException,
    failed_at: datetime,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> OutgoingMessage:
    """The record byte for byte, for the dead-letter topic, with the CONTRACT's headers.

    A copy that would not fit in `max_bytes` keeps as much as fits, in this order: the key, the
    input headers, the head of the value; `dlq.truncated` and `dlq.original.size` say so.
    A record with neither key nor value is copied with an empty value: Kafka allows such a
    record, but the producer cannot send one.
    """
    kept = tuple(h for h in record.headers if not h[0].lower().startswith(DLQ_HEADER_PREFIX))
    own = _error_headers(record.topic, record.partition, record.offset, error, failed_at)
    if wire_size(record.key, record.value, (*kept, *own)) <= max_bytes:
        value = b"" if record.key is None and record.value is None else record.value
        return OutgoingMessage(DLQ_TOPIC, record.key, value, (*kept, *own))
    header_bytes = sum(len(name.encode()) + len(v or b"") for name, v in record.headers)
    original = len(record.key or b"") + len(record.value or b"") + header_bytes
    own = (*own, ("dlq.truncated", b"true"), ("dlq.original.size", str(original).encode()))
    room = max_bytes - wire_size(None, None, own)
    key = None if record.key is None else record.key[: max(room, 0)]
    room -= len(key or b"")
    fitting = []
    for header in kept:
        if headers_size((header,)) > room:
            break
        fitting.append(header)
        room -= headers_size((header,))
    value = b"" if record.value is None else record.value[: max(room, 0)]
    return OutgoingMessage(DLQ_TOPIC, key, value, (*fitting, *own))


def unreadable_record(
    topic: str, partition: int, offset: int, error: BaseException, failed_at: datetime
) -> OutgoingMessage:
    """A dead letter for a record the Kafka client cannot parse (a header name that is not
    UTF-8, a corrupt batch): its content cannot be copied, so it says where the record is. Its
    value is empty: the producer cannot send a record with neither key nor value."""
    own = _error_headers(topic, partition, offset, error, failed_at)
    return OutgoingMessage(DLQ_TOPIC, None, b"", (*own, ("dlq.truncated", b"true")))


def _error_headers(
    topic: str, partition: int, offset: int, error: BaseException, failed_at: datetime
) -> Headers:
    message = str(error).replace("\n", " ")[:1000]
    return (
        ("dlq.error.class", type(error).__name__.encode()),
        ("dlq.error.message", message.encode("utf-8", "replace")),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", str(partition).encode()),
        ("dlq.source.offset", str(offset).encode()),
        ("dlq.failed.at", failed_at.isoformat().encode()),
    )
