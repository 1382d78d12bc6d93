"""A Kafka message as the core builds it: what to publish, where, with which key and headers."""

from __future__ import annotations

import base64
from dataclasses import dataclass

# Kafka allows a header without a value; it is kept as None so dead letters stay byte for byte.
Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message bound for a topic: a result event or a dead-lettered input."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def headers_json(self) -> list[list[str | None]]:
        """Headers in the outbox's storage form: [[name, base64 value or null], ...]."""
        return [
            [name, None if value is None else base64.b64encode(value).decode("ascii")]
            for name, value in self.headers
        ]


def headers_from_json(stored: list[list[str]]) -> Headers:
    """The inverse of `OutgoingMessage.headers_json`."""
    return tuple(
        (name, None if value is None else base64.b64decode(value)) for name, value in stored
    )
