"""The outbox relay against the real broker: order kept by several relays, parking, re-driving."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from tests.conftest import Stack
from tests.kafka import create_topic, new_prefix, read_all
from tests.support import eventually
from worker.core.messages import MAX_MESSAGE_BYTES, OutgoingMessage
from worker.db import outbox
from worker.messaging.outbox import OutboxRelay
from worker.messaging.sender import Sender
from worker.metrics import Metrics


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    """Connections to the test's migrated database, for the relays and the checks."""
    connections = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
    yield connections
    await connections.close()


def producer_factory(bootstrap: str, **options: Any) -> Callable[[], AIOKafkaProducer]:
    return lambda: AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", **options
    )


@contextlib.asynccontextmanager
async def relays(
    pool: asyncpg.Pool,
    new_producer: Callable[[], AIOKafkaProducer],
    prefix: str,
    count: int,
    metrics: Metrics | None = None,
    topics: Sequence[str] = (),
) -> AsyncIterator[list[OutboxRelay]]:
    """`count` relays running as tasks, as `count` workers would run them (`topics`: the
    senders' own, as the worker's result topics)."""
    senders = [Sender(new_producer, topic_prefix=prefix, topics=topics) for _ in range(count)]
    started = [
        OutboxRelay(outbox.Outbox(pool), sender, metrics or Metrics(CollectorRegistry()), chunk=50)
        for sender in senders
    ]
    for sender in senders:
        await sender.start()
    tasks = [asyncio.create_task(relay.run()) for relay in started]
    for relay in started:
        relay.wake()
    try:
        yield started
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sender in senders:
            await sender.close()


async def queue(pool: asyncpg.Pool, messages: list[OutgoingMessage]) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await outbox.enqueue(conn, messages)


async def drained(pool: asyncpg.Pool) -> None:
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_several_relays_draining_a_backlog_keep_each_students_results_in_order(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", 3)
    students = [f"s{n}" for n in range(6)]
    backlog = [  # what a broker outage leaves: each student's results, in decision order
        OutgoingMessage("coins.credited", s.encode(), json.dumps({"n": n}).encode())
        for n in range(3_000)
        for s in [students[n % len(students)]]
    ]
    await queue(pool, backlog)
    async with relays(pool, producer_factory(stack.kafka_bootstrap), prefix, 3):
        await eventually(lambda: drained(pool), within=60)
    records = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=3_000)
    by_student: dict[bytes, list[int]] = {}
    for record in records:  # read_all keeps each partition's order
        by_student.setdefault(record.key, []).append(json.loads(record.value)["n"])
    for student, seen in by_student.items():
        assert seen == sorted(seen), f"{student!r}'s results out of the order decided"
    assert sorted(n for seen in by_student.values() for n in seen) == list(range(3_000))


async def test_a_message_that_cannot_be_published_is_parked_and_redriven_after_a_fix(
    stack: Stack, db_url: str, pool: asyncpg.Pool
) -> None:
    prefix = new_prefix()
    # The fix an operator makes: the topic accepts larger messages (the producer too, below).
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", 1,
                       **{"max.message.bytes": str(4 * MAX_MESSAGE_BYTES)})  # fmt: skip
    too_large = b"x" * (2 * MAX_MESSAGE_BYTES)
    await queue(pool, [
        OutgoingMessage("coins.credited", b"s", b"before"),
        OutgoingMessage("coins.credited", b"s", too_large),
        OutgoingMessage("coins.credited", b"s", b"after"),
    ])  # fmt: skip
    metrics = Metrics(CollectorRegistry())
    async with relays(pool, producer_factory(stack.kafka_bootstrap), prefix, 1, metrics) as [relay]:
        await eventually(lambda: drained(pool), within=30)
        await relay.backlog()
    assert metrics.registry.get_sample_value("payment_worker_parked_messages") == 1
    assert metrics.registry.get_sample_value("payment_worker_parked_total") == 1
    published = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=2)
    assert [r.value for r in published] == [b"before", b"after"]

    listed = payment_worker(db_url, "parked", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert "coins.credited" in line
    assert "MessageSizeTooLargeError" in line
    seq = line.split("\t")[0]
    redriven = payment_worker(db_url, "parked", "redrive", seq)
    assert redriven.stdout.strip() == f"re-queued 1 parked message(s): {seq}"
    assert await pool.fetchval("SELECT count(*) FROM parked_messages") == 0

    larger = producer_factory(stack.kafka_bootstrap, max_request_size=4 * MAX_MESSAGE_BYTES)
    async with relays(pool, larger, prefix, 1):
        await eventually(lambda: drained(pool), within=30)
    published = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=3)
    assert [len(r.value or b"") for r in published] == [6, 5, len(too_large)]
    assert payment_worker(db_url, "parked", "list").stdout == ""


async def test_a_message_for_a_topic_the_cluster_lacks_is_parked_not_waited_for(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # A parked message re-driven after its topic was deleted (topics are never created by the
    # broker here, as in production): it is parked again and the messages behind it go out.
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", 1)
    await queue(pool, [
        OutgoingMessage("coins.credited", b"s", b"a"),
        OutgoingMessage("retired.type", b"s", b"b"),
        OutgoingMessage("coins.credited", b"s", b"c"),
    ])  # fmt: skip
    # A shorter metadata wait than the worker's 30 s, for the test's sake.
    quick = producer_factory(stack.kafka_bootstrap, request_timeout_ms=3000)
    async with relays(pool, quick, prefix, 1, topics=("coins.credited",)):
        await eventually(lambda: drained(pool), within=30)
    published = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=2)
    assert [r.value for r in published] == [b"a", b"c"]
    parked = await pool.fetch("SELECT topic, value, error_class FROM parked_messages")
    assert [tuple(p) for p in parked] == [("retired.type", b"b", "UnknownTopicOrPartitionError")]


def payment_worker(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The admin command, as an operator runs it."""
    env = {"PATH": os.environ["PATH"], "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_a_message_the_broker_refuses_is_parked_alone_and_the_rest_keep_their_order(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    # The broker refuses a whole producer batch, and the idempotent producer's sequence breaks
    # with it: the messages around the refused one must still go out, in order.
    prefix = new_prefix()
    await create_topic(stack.kafka_bootstrap, prefix + "coins.credited", 1,
                       **{"max.message.bytes": "2000"})  # fmt: skip
    values = [b"a", b"b", b"x" * 20_000, b"c", b"d"]
    await queue(pool, [OutgoingMessage("coins.credited", b"s", v) for v in values])
    metrics = Metrics(CollectorRegistry())
    async with relays(pool, producer_factory(stack.kafka_bootstrap), prefix, 1, metrics):
        await eventually(lambda: drained(pool), within=60)
    published = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=4)
    assert [r.value for r in published] == [b"a", b"b", b"c", b"d"]
    parked = await pool.fetch(
        "SELECT octet_length(value) AS size, error_class FROM parked_messages"
    )
    assert [tuple(p) for p in parked] == [(20_000, "MessageSizeTooLargeError")]
    assert metrics.registry.get_sample_value("payment_worker_parked_total") == 1
