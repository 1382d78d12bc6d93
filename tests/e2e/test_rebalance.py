"""Two workers in one group, with rebalances mid-stream, apply each effect exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.events import completed, structured
from tests.kafka import read_all
from tests.worker_process import running_worker, worker_env

STUDENTS, COURSES = 40, 10


async def test_effects_apply_once_across_a_worker_joining_and_one_leaving(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_BATCH_MAX_RECORDS="20")
    prefix = env["KAFKA_TOPIC_PREFIX"]
    sent = asyncio.Event()

    async def stream() -> None:
        for course in range(COURSES):
            for student in range(STUDENTS):
                data = completed(f"s{student}", f"c{course}")
                value = structured("course.completed", data)
                await producer.send(prefix + "course.completed", value, key=f"s{student}".encode())
                if student % 4 == 0:  # a replay with a new event id: must change nothing
                    again = structured("course.completed", data)
                    await producer.send(
                        prefix + "course.completed", again, key=f"s{student}".encode()
                    )
            await producer.flush()
            await asyncio.sleep(0.3)
        sent.set()

    async with running_worker(env, tmp_path) as first:
        await first.wait_ready()
        producing = asyncio.create_task(stream())
        await asyncio.sleep(1.0)
        async with running_worker(env, tmp_path) as second:
            await second.wait_ready()  # the group rebalanced to take it in
            await asyncio.sleep(1.0)
            assert await first.stop(signal.SIGTERM) == 0, first.log_tail()  # and again
            await producing
            credited = await read_all(
                stack.kafka_bootstrap, prefix + "coins.credited", at_least=STUDENTS * COURSES
            )
            assert await second.stop() == 0, second.log_tail()

    ids = {json.loads(r.value)["id"] for r in credited if r.value}
    assert len(ids) == STUDENTS * COURSES  # a repeated result carries the first one's id
    actions = [json.loads(line).get("action") for line in first.log_path.read_text().splitlines()]
    assert "revoke" in actions, "the first worker never went through a rebalance"
    conn = await asyncpg.connect(empty_db)
    try:
        assert await conn.fetchval("SELECT count(*) FROM coin_transactions") == STUDENTS * COURSES
        balances = await conn.fetch("SELECT DISTINCT balance FROM coin_wallets")
        assert [b["balance"] for b in balances] == [100 * COURSES]
    finally:
        await conn.close()
