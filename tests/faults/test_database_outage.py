"""PostgreSQL goes away and comes back: readiness follows it and the worker recovers alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.events import completed, send
from tests.faults.conftest import PrivatePostgres
from tests.support import eventually
from tests.worker_process import running_worker, worker_env


async def test_readyz_follows_postgres_and_events_sent_meanwhile_apply_once(
    stack: Stack, private_postgres: PrivatePostgres, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(private_postgres.database_url, stack.kafka_bootstrap)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()

        private_postgres.run("down")

        async def not_ready() -> None:
            response = await worker.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["database"] is False

        await eventually(not_ready, within=30)
        prefix = env["KAFKA_TOPIC_PREFIX"]
        for course in ("c-1", "c-2", "c-1"):  # the last is a replay
            await send(producer, prefix, "course.completed", completed("s", course), key="s")
        await asyncio.sleep(2)  # the worker holds these batches, retrying
        assert worker.process.returncode is None, "the worker must ride out the outage"

        private_postgres.run("up")
        await worker.wait_ready(within=60)

        async def applied() -> None:
            conn = await asyncpg.connect(private_postgres.database_url)
            try:
                rows = await conn.fetch("SELECT reference_id FROM coin_transactions ORDER BY 1")
                assert [r["reference_id"] for r in rows] == ["c-1", "c-2"]
                assert await conn.fetchval("SELECT balance FROM coin_wallets") == 200
            finally:
                await conn.close()

        await eventually(applied, within=30)
        assert await worker.stop() == 0, worker.log_tail()
