"""A stream of mixed events with a known outcome, and the invariants checked after a fault.

The stream is the benchmark's workload (`bench/workload.py`): its outcome does not depend on
the order the worker reads its topics in, so it can be checked exactly after any fault. The
checks are the issue's: every expected ledger entry and payment state exactly once, every
balance equal to its entries and >= 0, every expected result id on its topic at least once, no
result for anything that did not happen, and every bad message in the dead-letter topic.

The stream redeems catalog items too: each item's stock must end at its initial stock less the
applied redemptions of it.

The workers give coins a lifetime (`COIN_EXPIRY_DAYS`, long enough that nothing expires during
a run), so every credit is a lot and every debit draws on lots: the lots must stay in step with
the wallets (`assert_lots`), and `expire_everything` then expires them all, once per lot.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from bench.run import seed
from bench.workload import WEBHOOK_SECRET, Event, Workload, expected, generate

from tests.support import eventually
from worker.core.topics import DLQ_TOPIC, OUTPUT_TOPICS

# FAULTS_SCALE=5 (the longer mode) multiplies events, students and injected faults.
SCALE = max(1, int(os.environ.get("FAULTS_SCALE", "1")))
HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


@dataclass
class Stream:
    workload: Workload
    events: list[Event]
    bad: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = field(
        default_factory=list
    )


def make_stream(events: int, students: int, seed_value: int = 11) -> Stream:
    workload = generate(events, students, seed=seed_value)
    return Stream(workload, workload.events)


async def seed_database(database_url: str, stream: Stream) -> None:
    """Starting balances and the payments the webhooks report on (a migrated database)."""
    conn = await asyncpg.connect(database_url)
    try:
        await seed(conn, stream.workload)
    finally:
        await conn.close()


def worker_settings() -> dict[str, str]:
    """Settings every worker of a fault test needs for the stream."""
    return {
        "PAYMENT_WEBHOOK_SECRET_MOCK": WEBHOOK_SECRET,
        "KAFKA_SESSION_TIMEOUT_MS": "6000",  # a killed member is replaced in seconds
        "LOG_LEVEL": "INFO",
        "COIN_EXPIRY_DAYS": "30",
        "COIN_EXPIRY_INTERVAL_SECONDS": "0.5",
    }


async def assert_lots(conn: asyncpg.Connection) -> None:
    """Each wallet's `lotted` coins are what its open lots hold, and no more than its balance;
    every credit made under expiry has its lot; no lot expired twice, or more than it held."""
    off = await conn.fetchval(
        "SELECT count(*) FROM coin_wallets w WHERE w.lotted > w.balance OR w.lotted <>"
        " (SELECT coalesce(sum(remaining), 0) FROM coin_lots l WHERE l.student_id = w.student_id)"
    )
    assert off == 0, f"{off} wallets whose lots differ from their lotted coins"
    lotless = await conn.fetchval(
        "SELECT count(*) FROM coin_transactions t"
        " WHERE t.amount > 0 AND t.source_event_id <> 'seed' AND NOT EXISTS (SELECT 1"
        "  FROM coin_lots l WHERE l.transaction_id = t.transaction_id AND l.amount = t.amount)"
    )
    assert lotless == 0, f"{lotless} credits without their lot"
    twice = await conn.fetchval(
        "SELECT count(*) FROM (SELECT reference_id FROM coin_transactions WHERE type = 'expiry'"
        " GROUP BY 1 HAVING count(*) > 1) AS t"
    )
    assert twice == 0, f"{twice} lots expired twice"
    over = await conn.fetchval(
        "SELECT count(*) FROM coin_lots l JOIN coin_transactions t ON t.type = 'expiry'"
        " AND t.reference_id = l.transaction_id::text"
        " WHERE l.remaining <> 0 OR -t.amount > l.amount"
    )
    assert over == 0, f"{over} expired lots with coins left, or more expired than they held"


async def produce(
    producer: AIOKafkaProducer, prefix: str, stream: Stream, *, per_second: float | None = None
) -> None:
    """Send the stream's events (and its bad messages, interleaved) in order."""
    bad = iter(stream.bad)
    every = max(1, len(stream.events) // max(1, len(stream.bad))) if stream.bad else 0
    for n, event in enumerate(stream.events):
        await producer.send(prefix + event.kind, event.value, key=event.key, headers=HEADERS)
        if every and n % every == 0:
            item = next(bad, None)
            if item is not None:
                topic, key, value, headers = item
                await producer.send(prefix + topic, value, key=key, headers=headers)
        if per_second and n % 100 == 99:
            await asyncio.sleep(100 / per_second)
    for topic, key, value, headers in bad:
        await producer.send(prefix + topic, value, key=key, headers=headers)
    await producer.flush()


async def results_by_topic(bootstrap: str, prefix: str, topics: tuple[str, ...]) -> dict[str, list]:  # type: ignore[type-arg]
    """Every record now on `topics` (read to their end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = []
        for topic in topics:
            for partition in consumer.partitions_for_topic(prefix + topic) or set():
                partitions.append(TopicPartition(prefix + topic, partition))
        if not partitions:
            await consumer._client.force_metadata_update()
            for topic in topics:
                for partition in consumer.partitions_for_topic(prefix + topic) or set():
                    partitions.append(TopicPartition(prefix + topic, partition))
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        found: dict[str, list] = {t: [] for t in topics}  # type: ignore[type-arg]
        while any(await _behind(consumer, ends)):
            for tp, records in (await consumer.getmany(timeout_ms=500, max_records=5000)).items():
                found[tp.topic.removeprefix(prefix)].extend(records)
        return found
    finally:
        await consumer.stop()


@dataclass
class Due:
    """What expiring every open lot must do: one expiry per lot, of what it has left."""

    lots: dict[str, tuple[str, int]]  # lot (credit transaction id) -> (student, coins left)
    balances: dict[str, int]


async def make_everything_due(database_url: str) -> Due:
    """Move every open lot's deadline into the past (after the stream was applied and checked);
    returns what expiring them must do."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "UPDATE coin_lots SET expires_at = now() - interval '1 second' WHERE remaining > 0"
            " RETURNING transaction_id::text, student_id, remaining"
        )
        balances = dict(await conn.fetch("SELECT student_id, balance FROM coin_wallets"))
    finally:
        await conn.close()
    lots = {row["transaction_id"]: (row["student_id"], row["remaining"]) for row in rows}
    for student, left in lots.values():
        balances[student] -= left
    assert lots, "no lot had coins left to expire"
    return Due(lots, balances)


async def assert_everything_expired(
    database_url: str, bootstrap: str, prefix: str, due: Due, *, within: float = 120
) -> int:
    """Wait until no lot is due, then check each expired once, by what it had left, and each
    expiry announced; returns how many lots expired."""

    async def swept() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            left = await conn.fetchval("SELECT count(*) FROM coin_lots WHERE remaining > 0")
            assert left == 0, f"{left} lots not expired yet"
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0, "outbox not drained"
        finally:
            await conn.close()

    await eventually(swept, within=within, interval=0.5)
    conn = await asyncpg.connect(database_url)
    try:
        expiries = {
            row["reference_id"]: (row["student_id"], -row["amount"])
            for row in await conn.fetch(
                "SELECT reference_id, student_id, amount FROM coin_transactions"
                " WHERE type = 'expiry'"
            )
        }
        balances = dict(await conn.fetch("SELECT student_id, balance FROM coin_wallets"))
        await assert_lots(conn)
    finally:
        await conn.close()
    assert expiries == due.lots, "the expiries differ from the lots that fell due"
    assert balances == due.balances
    records = await results_by_topic(bootstrap, prefix, ("coins.expired",))
    announced = {json.loads(r.value)["data"]["reference_id"] for r in records["coins.expired"]}
    assert announced == set(due.lots), "an expiry was not announced, or one never made"
    return len(expiries)


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> list[bool]:
    return [await consumer.position(tp) < end for tp, end in ends.items()]


async def assert_outcome(
    database_url: str, bootstrap: str, prefix: str, stream: Stream, *, within: float = 120
) -> dict[str, int]:
    """Wait until the stream is fully applied and published, then check every invariant.

    Returns figures for the report: events, results and dead letters seen."""
    want = expected(stream.workload, stream.events)

    async def applied() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            entries = dict(
                await conn.fetch("SELECT type, count(*) FROM coin_transactions GROUP BY 1")
            )
            assert entries == dict(want.entries), f"entries {entries} != {dict(want.entries)}"
            statuses = dict(await conn.fetch("SELECT status, count(*) FROM payments GROUP BY 1"))
            assert statuses == {k: v for k, v in want.payment_statuses.items() if v}, statuses
            pending = await conn.fetchval("SELECT count(*) FROM gateway_calls")
            assert pending == 0, f"{pending} provider calls not made yet"
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0, "outbox not drained"
        finally:
            await conn.close()

    await eventually(applied, within=within, interval=0.5)
    conn = await asyncpg.connect(database_url)
    try:
        balances = dict(await conn.fetch("SELECT student_id, balance FROM coin_wallets"))
        drift = await conn.fetchval(
            "SELECT count(*) FROM coin_wallets w WHERE w.balance < 0 OR w.balance <>"
            " (SELECT coalesce(sum(amount), 0) FROM coin_transactions t"
            "  WHERE t.student_id = w.student_id)"
        )
        doubled = await conn.fetchval(
            "SELECT count(*) FROM (SELECT student_id, type, reference_id FROM coin_transactions"
            " GROUP BY 1, 2, 3 HAVING count(*) > 1) AS d"
        )
        await assert_lots(conn)
        stock = dict(await conn.fetch("SELECT item_id, stock FROM catalog_items"))
    finally:
        await conn.close()
    assert balances == want.balances, "balances differ from what the input implies"
    # Each item's stock is its initial stock less the redemptions applied, and never negative.
    assert stock == want.stock, f"catalog stock {stock} != {want.stock}"
    assert drift == 0, "a wallet differs from its entries or is negative"
    assert doubled == 0

    records = await results_by_topic(bootstrap, prefix, (*OUTPUT_TOPICS, DLQ_TOPIC))
    ids = {json.loads(r.value)["id"] for t in OUTPUT_TOPICS for r in records[t]}
    wanted = {e.result_id for e in stream.events}
    assert wanted <= ids, f"{len(wanted - ids)} expected results never published"
    assert ids <= wanted, f"{len(ids - wanted)} results for things that did not happen"
    dead = records[DLQ_TOPIC]
    assert len(dead) >= len(stream.bad), f"{len(dead)} dead letters for {len(stream.bad)} bad"
    return {
        "events": len(stream.events),
        "results": sum(len(records[t]) for t in OUTPUT_TOPICS),
        "distinct_results": len(ids),
        "dead_letters": len(dead),
    }
