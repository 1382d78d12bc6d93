"""The outbox table against the real PostgreSQL: one publisher at a time, oldest first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from worker.core.messages import OutgoingMessage
from worker.db import outbox
from worker.db.outbox import Outbox


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def message(value: bytes) -> OutgoingMessage:
    return OutgoingMessage("coins.credited", b"stu-1", value, (("a", b"1"),))


async def queue(pool: asyncpg.Pool, *values: bytes) -> None:
    async with pool.acquire() as conn:
        await outbox.enqueue(conn, [message(v) for v in values])


async def test_a_claim_takes_the_oldest_up_to_its_limit_in_queue_order(pool: asyncpg.Pool) -> None:
    await queue(pool, b"v1", b"v2")
    await queue(pool, b"v3")
    store = Outbox(pool)

    async with store.claim(2) as chunk:
        assert chunk is not None
        assert [m.message() for m in chunk.messages] == [message(b"v1"), message(b"v2")]
        await chunk.forget([m.seq for m in chunk.messages])
    async with store.claim(2) as chunk:
        assert chunk is not None
        assert [m.value for m in chunk.messages] == [b"v3"]
        await chunk.forget([m.seq for m in chunk.messages])
    async with store.claim(2) as chunk:
        assert chunk is not None
        assert chunk.messages == []  # empty, but this relay is the publisher


async def test_while_one_relay_publishes_another_claims_nothing(pool: asyncpg.Pool) -> None:
    await queue(pool, b"v1")
    store = Outbox(pool)

    async with store.claim(10) as first:
        assert first is not None
        assert [m.value for m in first.messages] == [b"v1"]
        async with store.claim(10) as second:
            assert second is None  # the first transaction holds the publisher lock
    async with store.claim(10) as after:  # the lock ended with the first transaction
        assert after is not None
        assert [m.value for m in after.messages] == [b"v1"]  # not forgotten: still queued
