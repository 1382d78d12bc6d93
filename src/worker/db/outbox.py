"""The outbox table: messages queued with their effect; the relay claims, forgets, parks."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from worker.core.messages import Headers, OutgoingMessage, headers_size
from worker.db.queries import Group, sql, unnest_arrays

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection

# Any fixed 64-bit number: the advisory lock that makes one relay at a time the publisher.
PUBLISHER_LOCK_KEY = 0x6F7574626F78  # "outbox"


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A message waiting in the outbox; `seq` is its place in the queue."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes | None
    stored_headers: bytes

    def headers(self) -> Headers:
        """The headers, from their storage form (`encode_headers`)."""
        return decode_headers(self.stored_headers)

    def message(self) -> OutgoingMessage:
        return OutgoingMessage(self.topic, self.key, self.value, self.headers())


async def enqueue(conn: Connection, messages: Sequence[OutgoingMessage]) -> None:
    """Queue `messages` inside the caller's transaction: they exist only if it commits."""
    if not messages:
        return
    await conn.execute(
        sql("outbox_enqueue"), *unnest_arrays("outbox_enqueue", messages, **_OUTBOX_COLUMNS)
    )


def outbox_rows(messages: Sequence[OutgoingMessage]) -> Group:
    """`messages` as the rows of an `outbox` unnest (`outbox_enqueue`, `payments_write`)."""
    return messages, _OUTBOX_COLUMNS


_OUTBOX_COLUMNS: Mapping[str, Callable[[OutgoingMessage], object]] = {
    "headers": lambda message: encode_headers(message.headers),
}


async def claim_oldest(conn: Connection, limit: int) -> list[QueuedMessage] | None:
    """Make the caller's transaction the only publisher until it ends, and lock the oldest
    `limit` queued messages, in queue order (None: another relay publishes now)."""
    rows = await conn.fetch(sql("outbox_claim"), PUBLISHER_LOCK_KEY, limit)
    if not rows[0]["publisher"]:
        return None
    return [
        QueuedMessage(row["seq"], row["topic"], row["key"], row["value"], row["headers"])
        for row in rows
        if row["seq"] is not None
    ]


async def forget(conn: Connection, seqs: Sequence[int]) -> None:
    """Delete messages the broker has acknowledged."""
    await conn.execute(sql("outbox_delete"), list(seqs))


async def park(conn: Connection, refused: Mapping[int, Exception]) -> None:
    """Move the messages the broker refused for good (by seq, with why) to `parked_messages`."""
    await conn.execute(
        sql("outbox_park"),
        *unnest_arrays(
            "outbox_park",
            list(refused.items()),
            seq=lambda item: item[0],
            error_class=lambda item: type(item[1]).__name__,
            error_message=lambda item: _reason(item[1]),
        ),
    )


async def park_unqueued(
    conn: Connection, refused: Sequence[tuple[OutgoingMessage, Exception]]
) -> None:
    """Park messages that were published from memory, never queued, with why."""
    await conn.execute(
        sql("parked_insert"),
        *unnest_arrays(
            "parked_insert",
            refused,
            topic=lambda item: item[0].topic,
            key=lambda item: item[0].key,
            value=lambda item: item[0].value,
            headers=lambda item: encode_headers(item[0].headers),
            error_class=lambda item: type(item[1]).__name__,
            error_message=lambda item: _reason(item[1]),
        ),
    )


@dataclass(frozen=True, slots=True)
class Backlog:
    queued: int  # messages waiting to be published
    parked: int  # messages parked for an operator
    oldest_seconds: float = 0.0  # how long the oldest waiting one has waited


async def backlog(conn: Connection) -> Backlog:
    """How many messages are queued and parked, and how old the oldest queued one is."""
    row = await conn.fetchrow(sql("outbox_backlog"))
    return Backlog(row["queued"], row["parked"], row["oldest_seconds"]) if row else Backlog(0, 0)


def _reason(error: Exception) -> str:
    # PostgreSQL text refuses NUL; a broker's message is kept short.
    return str(error).replace("\x00", "")[:1000] or type(error).__name__


@dataclass(frozen=True, slots=True)
class Claimed:
    """Messages claimed by a publishing transaction; what it forgets or parks commits with it."""

    conn: Connection
    messages: list[QueuedMessage]

    async def forget(self, seqs: Sequence[int]) -> None:
        await forget(self.conn, seqs)

    async def park(self, refused: Mapping[int, Exception]) -> None:
        await park(self.conn, refused)


class Outbox:
    """The outbox table behind a pool, as the relay uses it (`worker.messaging.outbox`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[Claimed | None]:
        """One transaction as the only publisher, holding the oldest `limit` messages (None:
        another relay publishes now). It commits when the block ends, rolls back if it raises."""
        async with self._pool.acquire() as conn, conn.transaction():
            messages = await claim_oldest(conn, limit)
            yield None if messages is None else Claimed(conn, messages)

    async def backlog(self) -> Backlog:
        async with self._pool.acquire() as conn:
            return await backlog(conn)

    async def coin_results_queued(self) -> bool:
        """Whether any coin result still waits in the outbox."""
        async with self._pool.acquire() as conn:
            return bool(await conn.fetchval(sql("outbox_coin_results")))

    async def park(self, refused: Sequence[tuple[OutgoingMessage, Exception]]) -> None:
        """Park messages published from memory that the broker refused for good."""
        async with self._pool.acquire() as conn:
            await park_unqueued(conn, refused)


# Headers in storage form: bytes, not text, because a header name may hold any character, NUL
# included, which PostgreSQL text and jsonb refuse.

_LENGTH = struct.Struct(">i")
# Only small header sets are cached: a dead letter's may be large and is seen once.
_CACHED_BYTES = 256


def encode_headers(headers: Headers) -> bytes:
    """Headers as bytes, in order: per header a 4-byte name length, the UTF-8 name, a 4-byte
    value length (-1: no value) and the value."""
    if len(headers) == 1 and headers_size(headers) <= _CACHED_BYTES:
        return _encode_cached(headers)  # every result carries the same header: encode it once
    return _encode(headers)


def decode_headers(stored: bytes) -> Headers:
    """The inverse of `encode_headers`."""
    if len(stored) <= _CACHED_BYTES:
        return _decode_cached(stored)
    return _decode(stored)


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
