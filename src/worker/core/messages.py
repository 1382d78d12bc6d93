"""A Kafka message as the core builds it: what to publish, where, with which key and headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

# Kafka allows a header without a value; it is kept as None so dead letters stay byte for byte.
Headers = tuple[tuple[str, bytes | None], ...]

# The largest message the producer sends (its `max_request_size`, aiokafka's default): the
# broker's default limit (`message.max.bytes`, 1048588) leaves room for one record batch.
MAX_MESSAGE_BYTES = 1_048_576
# A generous upper bound of what Kafka adds around a record: the batch header (61 bytes) and
# the record's own varints; and around each header, its two length varints.
_RECORD_OVERHEAD = 128
_HEADER_OVERHEAD = 10

_LENGTH = struct.Struct(">i")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message bound for a topic: a result event or a dead-lettered input."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = ()

    def headers_bytes(self) -> bytes:
        """Headers in the outbox's storage form (see `encode_headers`)."""
        return encode_headers(self.headers)

    def wire_size(self) -> int:
        return wire_size(self.key, self.value, self.headers)


def wire_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """At least the bytes a message takes in a request of its own (an upper bound)."""
    return _RECORD_OVERHEAD + len(key or b"") + len(value or b"") + headers_size(headers)


def headers_size(headers: Headers) -> int:
    return sum(_HEADER_OVERHEAD + len(name.encode()) + len(v or b"") for name, v in headers)


def encode_headers(headers: Headers) -> bytes:
    """Headers as bytes, in order: per header a 4-byte name length, the UTF-8 name, a 4-byte
    value length (-1: no value) and the value. Bytes, not text, because a header name may hold
    any character, NUL included, which PostgreSQL text and jsonb refuse."""
    if len(headers) == 1 and headers_size(headers) <= _CACHED_BYTES:
        return _encode_cached(headers)  # every result carries the same header: encode it once
    return _encode(headers)


def decode_headers(stored: bytes) -> Headers:
    """The inverse of `encode_headers`."""
    if len(stored) <= _CACHED_BYTES:
        return _decode_cached(stored)
    return _decode(stored)


# Only small header sets are cached: a dead letter's may be large and is seen once.
_CACHED_BYTES = 256


def _encode(headers: Headers) -> bytes:
    parts = []
    for name, value in headers:
        encoded = name.encode()
        parts += [_LENGTH.pack(len(encoded)), encoded]
        parts += [_LENGTH.pack(-1)] if value is None else [_LENGTH.pack(len(value)), value]
    return b"".join(parts)


def _decode(stored: bytes) -> Headers:
    headers: list[tuple[str, bytes | None]] = []
    position = 0
    while position < len(stored):
        (size,) = _LENGTH.unpack_from(stored, position)
        name = stored[position + 4 : position + 4 + size].decode()
        position += 4 + size
        (size,) = _LENGTH.unpack_from(stored, position)
        position += 4
        if size < 0:
            headers.append((name, None))
            continue
        headers.append((name, stored[position : position + size]))
        position += size
    return tuple(headers)


@lru_cache(maxsize=16)
def _encode_cached(headers: Headers) -> bytes:
    return _encode(headers)


@lru_cache(maxsize=16)
def _decode_cached(stored: bytes) -> Headers:
    return _decode(stored)
