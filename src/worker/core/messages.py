"""A Kafka message as the core builds it: what to publish, where, with which key and headers."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from functools import lru_cache

# Kafka allows a header without a value; it is kept as None so dead letters stay byte for byte.
Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message bound for a topic: a result event or a dead-lettered input."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def headers_json(self) -> str:
        """Headers in the outbox's storage form: JSON [[name, base64 value or null], ...]."""
        return _encode_headers(self.headers)


@lru_cache(maxsize=64)  # results all carry the same header: encode it once
def _encode_headers(headers: Headers) -> str:
    return json.dumps(
        [
            [name, None if value is None else base64.b64encode(value).decode("ascii")]
            for name, value in headers
        ]
    )


@lru_cache(maxsize=64)
def headers_from_json(stored: str) -> Headers:
    """The inverse of `OutgoingMessage.headers_json`."""
    return tuple(
        (name, None if value is None else base64.b64decode(value))
        for name, value in json.loads(stored)
    )
