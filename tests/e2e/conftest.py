"""Fixtures for tests through the real broker and a worker process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Stack
from tests.kafka import read_all
from tests.worker_process import WorkerProcess, running_worker, worker_env


@dataclass
class RunningWorker:
    worker: WorkerProcess
    prefix: str
    group: str
    database_url: str
    bootstrap: str

    async def results(self, kind: str, at_least: int) -> list[dict[str, Any]]:
        """The result events of `kind` the worker published, decoded."""
        records = await read_all(self.bootstrap, self.prefix + kind, at_least=at_least)
        return [json.loads(r.value) for r in records if r.value is not None]


@pytest.fixture
async def coin_worker(stack: Stack, empty_db: str, tmp_path: Path) -> AsyncIterator[RunningWorker]:
    """A ready worker on its own topics, group and database; stopped (exit 0) afterwards."""
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_BATCH_MAX_WAIT_MS="20")
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        yield RunningWorker(
            worker,
            env["KAFKA_TOPIC_PREFIX"],
            env["KAFKA_CONSUMER_GROUP"],
            empty_db,
            stack.kafka_bootstrap,
        )
        assert await worker.stop() == 0, worker.log_tail()


WEBHOOK_SECRET = "whsec_e2e_mock_secret"
StartWorker = Callable[..., Awaitable[RunningWorker]]


@pytest.fixture
async def start_worker(stack: Stack, empty_db: str, tmp_path: Path) -> AsyncIterator[StartWorker]:
    """Starts ready workers with a mock webhook secret and the given settings; each is
    stopped (exit 0) afterwards."""
    async with AsyncExitStack() as workers:

        async def start(**overrides: str) -> RunningWorker:
            env = worker_env(
                empty_db,
                stack.kafka_bootstrap,
                WORKER_BATCH_MAX_WAIT_MS="20",
                PAYMENT_WEBHOOK_SECRET_MOCK=WEBHOOK_SECRET,
                **overrides,
            )
            worker = await workers.enter_async_context(running_worker(env, tmp_path))
            workers.push_async_callback(_stopped_cleanly, worker)
            await worker.wait_ready()
            return RunningWorker(
                worker,
                env["KAFKA_TOPIC_PREFIX"],
                env["KAFKA_CONSUMER_GROUP"],
                empty_db,
                stack.kafka_bootstrap,
            )

        yield start


async def _stopped_cleanly(worker: WorkerProcess) -> None:
    assert await worker.stop() == 0, worker.log_tail()


@pytest.fixture
async def payment_worker(start_worker: StartWorker) -> RunningWorker:
    """A ready worker with the mock provider's webhook secret and the default 30-minute TTL."""
    return await start_worker()
