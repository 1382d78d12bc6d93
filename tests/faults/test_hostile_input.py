"""Hostile input: a flood of malformed messages of every kind, and redemption races."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.events import adjustment, binary_headers, redemption, structured
from tests.faults.stream import (
    HEADERS,
    SCALE,
    assert_outcome,
    make_stream,
    produce,
    results_by_topic,
    seed_database,
    worker_settings,
)
from tests.kafka import keep_producer_time
from tests.support import eventually
from tests.worker_process import running_worker, worker_env

BAD_KINDS = 1_000 * SCALE
TOPICS = ("course.completed", "coins.redemption.requested", "payment.requested",
          "payment.webhook.received", "referral.succeeded")  # fmt: skip


def malformed(n: int) -> tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The n-th bad message: every kind of bad input the CONTRACT names, in turn."""
    topic = TOPICS[n % len(TOPICS)]
    key = f"bad-{n}".encode()
    good = json.loads(structured("course.completed", {
        "student_id": "s", "course_id": "c", "completed_at": "2026-11-26T09:00:00Z"}))  # fmt: skip
    kinds = [
        lambda: (b"\xff\xfe not utf-8 \xc3\x28", HEADERS),
        lambda: (b"{not json", HEADERS),
        lambda: (b"[1, 2, 3]", HEADERS),
        lambda: (None, HEADERS),
        lambda: (json.dumps({**good, "specversion": "0.3"}).encode(), HEADERS),
        lambda: (json.dumps({k: v for k, v in good.items() if k != "id"}).encode(), HEADERS),
        lambda: (json.dumps({**good, "type": "coins.gifted"}).encode(), HEADERS),
        lambda: (json.dumps({**good, "type": topic, "data": {"amount": "lots"}}).encode(), HEADERS),
        lambda: (
            json.dumps({**good, "type": topic, "data": {"student_id": "a\u0000b"}}).encode(),
            HEADERS,
        ),
        lambda: (b'{"data": {}}', [("ce_specversion", b"1.0"), ("ce_type", topic.encode())]),
        lambda: (json.dumps({**good, "type": topic, "data": {"amount": 1e400}}).encode(), HEADERS),
        lambda: (b"x" * 1_000_000, HEADERS),  # a 1 MB value
    ]
    # The 1 MB value is sent a few times only; the rest rotate through the other kinds.
    index = 11 if n in (7, 500) else n % 11
    value, headers = kinds[index]()
    return topic, key, value, headers


async def test_a_flood_of_bad_input_is_dead_lettered_and_valid_events_still_apply(
    stack: Stack, db_url: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    stream = make_stream(3_000 * SCALE, 500, seed_value=23)
    stream.bad = [malformed(n) for n in range(BAD_KINDS)]
    await seed_database(db_url, stream)
    env = worker_env(db_url, stack.kafka_bootstrap, **worker_settings())
    prefix = env["KAFKA_TOPIC_PREFIX"]
    await keep_producer_time(stack.kafka_bootstrap, env)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        await produce(producer, prefix, stream)
        figures = await assert_outcome(db_url, stack.kafka_bootstrap, prefix, stream)
        assert worker.process.returncode is None, "bad input must never stop the worker"
        assert await worker.stop() == 0, worker.log_tail()
    dead = (await results_by_topic(stack.kafka_bootstrap, prefix, ("payment-worker.dlq",)))[
        "payment-worker.dlq"
    ]
    assert len(dead) == BAD_KINDS  # each exactly once: nothing was retried into a duplicate
    by_key = {r.key: r for r in dead}
    for topic, key, value, _ in stream.bad:
        record = by_key[key]
        headers = dict(record.headers)
        assert record.value == value, "dead letters keep the value byte for byte"
        assert headers["dlq.source.topic"] == (prefix + topic).encode()
        assert int(headers["dlq.source.offset"]) >= 0
        assert headers["dlq.error.class"] == b"BadInputError"
    print(f"\nfaults: {BAD_KINDS} bad messages dead-lettered, {figures}")


async def test_racing_redemptions_never_overdraw_and_apply_exactly_the_affordable_ones(
    stack: Stack, db_url: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(db_url, stack.kafka_bootstrap, WORKER_BATCH_MAX_RECORDS="7")
    prefix, student = env["KAFKA_TOPIC_PREFIX"], "racer"
    count, price, funds = 60 * SCALE, 30, 1_000
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        seed = structured("coins.adjustment.requested", adjustment("fund", student, funds))
        await producer.send_and_wait(
            prefix + "coins.adjustment.requested", seed, key=student.encode(), headers=HEADERS
        )
        # Events of different types sit on different topics, whose order the worker does not
        # promise across batches: let the funding land before the race starts.
        await eventually(lambda: _balance_is(db_url, student, funds), within=30)
        topic = prefix + "coins.redemption.requested"
        sent: list[str] = []
        for n in range(count):
            data = redemption(f"r{n}", student, price)
            if n % 3 == 1:  # binary mode
                await producer.send(
                    topic,
                    json.dumps(data).encode(),
                    key=student.encode(),
                    headers=binary_headers("coins.redemption.requested", student),
                )
            else:
                await producer.send(
                    topic,
                    structured("coins.redemption.requested", data),
                    key=student.encode(),
                    headers=HEADERS,
                )
            sent.append(f"r{n}")
            if n % 5 == 4:  # and a replay of an earlier one, with a new event id
                again = redemption(f"r{n - 2}", student, price)
                await producer.send(
                    topic,
                    structured("coins.redemption.requested", again),
                    key=student.encode(),
                    headers=HEADERS,
                )
        await producer.flush()

        async def decided() -> list[str]:
            conn = await asyncpg.connect(db_url)
            try:
                decisions = await conn.fetchval(
                    "SELECT count(*) FROM coin_requests WHERE type = 'redemption'"
                )
                assert decisions == count
                rows = await conn.fetch(
                    "SELECT reference_id FROM coin_transactions WHERE type = 'redemption'"
                    " ORDER BY seq"
                )
                balance = await conn.fetchval(
                    "SELECT balance FROM coin_wallets WHERE student_id = $1", student
                )
                assert balance >= 0
                return [r["reference_id"] for r in rows]
            finally:
                await conn.close()

        applied = await eventually(decided, within=60)
        assert await worker.stop() == 0, worker.log_tail()
    affordable = funds // price
    assert applied == sent[:affordable]  # in partition order: the first 33 fit, no other
    conn = await asyncpg.connect(db_url)
    try:
        assert (
            await conn.fetchval("SELECT balance FROM coin_wallets WHERE student_id = $1", student)
            == funds - affordable * price
        )
    finally:
        await conn.close()


async def _balance_is(url: str, student: str, expected: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        balance = await conn.fetchval(
            "SELECT balance FROM coin_wallets WHERE student_id = $1", student
        )
        assert balance == expected, balance
    finally:
        await conn.close()
