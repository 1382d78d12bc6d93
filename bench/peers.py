"""What a team would otherwise write: FastStream consumers of course completions (bench only).

Both peers credit the configured reward once per (student, course), the worker's idempotency
key, keep a wallet balance that never goes negative, and publish the worker's `coins.credited`
result (the same id, derived from the same key) after their commit. They do far less than the
worker: no dead letters, no stored refusals, no answers for redeliveries, no payments.

- `per_message`: the idiomatic FastStream consumer: one handler call and one transaction per
  message, the result published before the offset is committed (`AckPolicy.ACK`).
- `batched`: the same team tuning for speed: FastStream's batch subscriber, one transaction per
  batch with `executemany`, the batch's results published concurrently. (Its `balance_after`
  is the balance at the end of the batch: exact only for one credit per student per batch.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from worker.core.results import derived_id

REWARD = 100  # the worker's default COIN_REWARD_COURSE_COMPLETION
SCHEMA = """
CREATE TABLE peer_credits (
    student_id text NOT NULL,
    course_id text NOT NULL,
    amount bigint NOT NULL,
    PRIMARY KEY (student_id, course_id)
);
CREATE TABLE peer_wallets (
    student_id text PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);
"""
# A new credit moves the wallet and returns the balance after it; a repeat returns nothing.
CREDIT = """
WITH new AS (
    INSERT INTO peer_credits VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING student_id, amount
)
INSERT INTO peer_wallets (student_id, balance) SELECT student_id, amount FROM new
ON CONFLICT (student_id) DO UPDATE SET balance = peer_wallets.balance + EXCLUDED.balance
RETURNING balance
"""
# The batch peer, per message (executemany): the balance is read back for the results.
CREDIT_MANY = """
WITH new AS (
    INSERT INTO peer_credits VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING student_id, amount
)
INSERT INTO peer_wallets (student_id, balance) SELECT student_id, amount FROM new
ON CONFLICT (student_id) DO UPDATE SET balance = peer_wallets.balance + EXCLUDED.balance
"""
BALANCES = "SELECT student_id, balance FROM peer_wallets WHERE student_id = ANY($1::text[])"


@dataclass
class Progress:
    """When a peer received its first message, and when it has handled `total`."""

    total: int
    started: float | None = None
    handled: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def add(self, count: int) -> None:
        self.handled += count
        if self.handled >= self.total:
            self.finished.set()


def _credited(event: dict[str, Any], balance: int) -> bytes:
    """The worker's `coins.credited` for this course completion (same id, same data)."""
    data = event["data"]
    student, course = data["student_id"], data["course_id"]
    return json.dumps(
        {
            "specversion": "1.0",
            "id": derived_id("coins.credited", student, "course_completion", course),
            "type": "coins.credited",
            "source": "peer",
            "subject": student,
            "time": datetime.now(UTC).isoformat(),
            "datacontenttype": "application/json",
            "data": {
                "student_id": student,
                "type": "course_completion",
                "reference_id": course,
                "amount": REWARD,
                "balance_after": balance,
                "source_event_id": event["id"],
            },
        }
    ).encode()


def per_message(
    broker: KafkaBroker, pool: asyncpg.Pool, topic: str, out: str, group: str, done: Progress
) -> None:
    @broker.subscriber(
        topic, group_id=group, auto_offset_reset="earliest", ack_policy=AckPolicy.ACK
    )
    async def credit(body: bytes, message: KafkaMessage) -> None:
        done.start()
        event = json.loads(body)
        data = event["data"]
        async with pool.acquire() as conn, conn.transaction():
            balance = await conn.fetchval(CREDIT, data["student_id"], data["course_id"], REWARD)
        if balance is not None:
            await broker.publish(_credited(event, balance), out, key=message.raw_message.key)
        done.add(1)


def batched(
    broker: KafkaBroker, pool: asyncpg.Pool, topic: str, out: str, group: str, done: Progress
) -> None:
    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK,
        batch=True,
        max_records=500,
        batch_timeout_ms=50,
    )
    async def credit(body: list[bytes]) -> None:
        done.start()
        events = [json.loads(value) for value in body]
        rows = [(e["data"]["student_id"], e["data"]["course_id"], REWARD) for e in events]
        async with pool.acquire() as conn, conn.transaction():
            # Which of them were credited before (repeats get no result), then the credits.
            known = await conn.fetch(
                "SELECT student_id, course_id FROM peer_credits AS c JOIN unnest($1::text[], "
                "$2::text[]) AS k (s, r) ON c.student_id = k.s AND c.course_id = k.r",
                [r[0] for r in rows],
                [r[1] for r in rows],
            )
            seen = {(r["student_id"], r["course_id"]) for r in known}
            await conn.executemany(CREDIT_MANY, rows)
            balances = {
                r["student_id"]: r["balance"]
                for r in await conn.fetch(BALANCES, sorted({r[0] for r in rows}))
            }
        fresh: list[Awaitable[Any]] = []
        new_keys: set[tuple[str, str]] = set()
        for event, (student, course, _) in zip(events, rows, strict=True):
            if (student, course) in seen or (student, course) in new_keys:
                continue
            new_keys.add((student, course))
            fresh.append(
                broker.publish(_credited(event, balances[student]), out, key=student.encode())
            )
        await asyncio.gather(*fresh)
        done.add(len(body))


PEERS: dict[str, Callable[..., None]] = {"per message": per_message, "batched": batched}


async def run_peer(
    name: str, bootstrap: str, database_url: str, topic: str, out: str, total: int
) -> tuple[float, float]:
    """Run peer `name` until it has handled `total` messages: seconds and events/s, from the
    moment it received its first message to the end of its last."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(SCHEMA)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    broker = KafkaBroker(bootstrap, logger=None)
    done = Progress(total)
    PEERS[name](broker, pool, topic, out, f"peer-{name.replace(' ', '-')}-{topic}", done)
    try:
        await broker.start()
        await done.finished.wait()
        last = time.perf_counter()
    finally:
        await broker.stop()
        await pool.close()
    seconds = max(last - (done.started or last), 1e-9)
    return seconds, total / seconds
