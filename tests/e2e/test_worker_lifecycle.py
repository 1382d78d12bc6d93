"""The worker as a process: starts, becomes ready, consumes, commits, stops cleanly."""

from __future__ import annotations

import json
import signal
from datetime import timedelta
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.kafka import committed_offsets, read_all
from tests.support import eventually
from tests.worker_process import JWT_SECRET, running_worker, worker_env
from worker.sidecar.auth import mint_token

MINUTES = timedelta(minutes=5)


async def test_worker_becomes_ready_then_stops_on_sigterm_with_exit_0(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        assert (await worker.get("/healthz")).status_code == 200
        metrics = (await worker.get("/metrics")).text
        assert "payment_worker_ready 1.0" in metrics

        assert await worker.stop(signal.SIGTERM) == 0, worker.log_tail()

    log_lines = [json.loads(line) for line in worker.log_path.read_text().splitlines()]
    assert {"started", "stopped"} <= {line.get("action") for line in log_lines}


async def test_worker_applies_migrations_at_start(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    async with running_worker(worker_env(empty_db, stack.kafka_bootstrap), tmp_path) as worker:
        await worker.wait_ready()
        conn = await asyncpg.connect(empty_db)
        try:
            assert await conn.fetchval("SELECT to_regclass('coin_wallets') IS NOT NULL")
        finally:
            await conn.close()
        assert await worker.stop() == 0


async def test_undecodable_message_is_dead_lettered_and_its_offset_committed(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    prefix, group = env["KAFKA_TOPIC_PREFIX"], env["KAFKA_CONSUMER_GROUP"]
    topic = f"{prefix}course.completed"
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        sent = await producer.send_and_wait(
            topic, b"\xff not json", key=b"student-1", headers=[("origin", b"test")]
        )

        [dead] = await read_all(stack.kafka_bootstrap, f"{prefix}payment-worker.dlq", at_least=1)
        assert (dead.key, dead.value) == (b"student-1", b"\xff not json")
        headers = dict(dead.headers)
        assert headers["origin"] == b"test"
        assert headers["dlq.source.topic"] == topic.encode()
        assert headers["dlq.source.partition"] == str(sent.partition).encode()
        assert headers["dlq.source.offset"] == str(sent.offset).encode()

        async def committed() -> None:
            offsets = await committed_offsets(stack.kafka_bootstrap, group, topic)
            assert offsets.get(sent.partition) == sent.offset + 1

        await eventually(committed)
        assert await worker.stop() == 0


async def test_while_the_broker_cannot_be_reached_reads_are_served_and_not_ready(
    db_url: str, tmp_path: Path
) -> None:
    """The read API needs only the database: a worker waiting for Kafka at start serves reads,
    says it is not ready (no group), and still stops cleanly on SIGTERM."""
    env = worker_env(db_url, "127.0.0.1:1")  # nothing listens on port 1
    async with running_worker(env, tmp_path) as worker:
        admin = {"Authorization": f"Bearer {mint_token(JWT_SECRET, 'ops', 'admin', MINUTES)}"}

        async def reads_answer() -> None:
            assert worker.process.returncode is None, worker.log_tail()
            try:
                async with httpx.AsyncClient(base_url=worker.base_url, timeout=5) as client:
                    response = await client.get("/api/v1/payments/nobody", headers=admin)
            except httpx.TransportError as exc:
                raise AssertionError(f"sidecar not answering: {exc}") from exc
            assert response.status_code == 404, response.text  # the database answered

        await eventually(reads_answer, within=30)
        ready = await worker.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": True, "kafka_group": False}
        assert await worker.stop(signal.SIGTERM) == 0, worker.log_tail()
