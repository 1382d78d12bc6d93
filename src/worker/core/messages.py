"""A Kafka message as the core builds it: what to publish, where, with which key and headers."""

from __future__ import annotations

from worker.core.values import value_type

# Kafka allows a header without a value; it is kept as None so dead letters stay byte for byte.
Headers = tuple[tuple[str, bytes | None], ...]

# The largest message the producer sends (its `max_request_size`, aiokafka's default): the
# broker's default limit (`message.max.bytes`, 1048588) leaves room for one record batch.
MAX_MESSAGE_BYTES = 1_048_576
# A generous upper bound of what Kafka adds around a record: the batch header (61 bytes) and
# the record's own varints; and around each header, its two length varints.
_RECORD_OVERHEAD = 128
_HEADER_OVERHEAD = 10


@value_type
class OutgoingMessage:
    """One message bound for a topic: a result event or a dead-lettered input."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def wire_size(self) -> int:
        return wire_size(self.key, self.value, self.headers)


def wire_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """At least the bytes a message takes in a request of its own (an upper bound)."""
    return _RECORD_OVERHEAD + len(key or b"") + len(value or b"") + headers_size(headers)


def headers_size(headers: Headers) -> int:
    return sum(_HEADER_OVERHEAD + len(name.encode()) + len(v or b"") for name, v in headers)
