"""PostgreSQL and then the Kafka broker stop mid-stream and come back: the worker rides it out
without a restart, /readyz follows, and the stream's outcome is exact."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.faults.conftest import PrivatePostgres
from tests.faults.stream import (
    SCALE,
    assert_outcome,
    make_stream,
    produce,
    seed_database,
    worker_settings,
)
from tests.kafka import keep_producer_time
from tests.support import STACK, eventually, free_port
from tests.worker_process import WorkerProcess, running_worker, worker_env
from worker.db.migrate import apply_migrations

OUTAGE_SECONDS = 5 * SCALE


async def readiness(worker: WorkerProcess, check: str, expected: bool) -> None:
    async def reflects() -> None:
        response = await worker.get("/readyz")
        assert response.json()["checks"][check] is expected, response.text
        assert response.status_code == (200 if expected else 503)

    await eventually(reflects, within=60, interval=0.2)


async def test_postgres_stopped_mid_stream(
    stack: Stack, private_postgres: PrivatePostgres, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    stream = make_stream(6_000 * SCALE, 1_000, seed_value=31)
    conn = await asyncpg.connect(private_postgres.database_url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    await seed_database(private_postgres.database_url, stream)
    env = worker_env(private_postgres.database_url, stack.kafka_bootstrap, **worker_settings())
    prefix = env["KAFKA_TOPIC_PREFIX"]
    await keep_producer_time(stack.kafka_bootstrap, env)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        producing = asyncio.create_task(produce(producer, prefix, stream, per_second=1_500))
        await asyncio.sleep(1.5)
        private_postgres.run("down")
        await readiness(worker, "database", False)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.process.returncode is None, "the worker must ride out the outage"
        private_postgres.run("up")
        await readiness(worker, "database", True)
        await producing
        figures = await assert_outcome(
            private_postgres.database_url, stack.kafka_bootstrap, prefix, stream
        )
        assert worker.process.returncode is None  # never restarted, never crash-looped
        assert await worker.stop() == 0, worker.log_tail()
    print(f"\nfaults: PostgreSQL down {OUTAGE_SECONDS} s mid-stream, {figures}")


@pytest.fixture
def private_kafka(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A broker of this test's own, which it may stop and start."""
    port, controller, sasl = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "STACK_DIR": str(tmp_path_factory.mktemp("kafka")),
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SASL_PORT": str(sasl),  # the shared broker has the default one
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)

    def run(action: str) -> None:
        subprocess.run([STACK, action, "kafka"], env=env, check=True)

    run("up")
    yield f"127.0.0.1:{port}", run
    run("down")


async def test_kafka_stopped_mid_stream(
    stack: Stack,
    db_url: str,
    tmp_path: Path,
    private_kafka,  # type: ignore[no-untyped-def]
) -> None:
    bootstrap, broker = private_kafka
    stream = make_stream(6_000 * SCALE, 1_000, seed_value=37)
    await seed_database(db_url, stream)
    env = worker_env(db_url, bootstrap, **worker_settings())
    prefix = env["KAFKA_TOPIC_PREFIX"]
    await keep_producer_time(bootstrap, env)
    half = len(stream.events) // 2
    first, second = make_stream(0, 1), make_stream(0, 1)
    first.workload, first.events = stream.workload, stream.events[:half]
    second.workload, second.events = stream.workload, stream.events[half:]
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        await produce(producer, prefix, first)
        await producer.stop()
        await asyncio.sleep(1.0)  # the worker is mid-stream
        broker("down")
        await readiness(worker, "kafka_group", False)
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.process.returncode is None, "the worker must ride out the outage"
        broker("up")
        await readiness(worker, "kafka_group", True)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        await produce(producer, prefix, second)
        await producer.stop()
        figures = await assert_outcome(db_url, bootstrap, prefix, stream)
        assert worker.process.returncode is None
        assert await worker.stop() == 0, worker.log_tail()
    print(f"\nfaults: Kafka down {OUTAGE_SECONDS} s mid-stream, {figures}")
