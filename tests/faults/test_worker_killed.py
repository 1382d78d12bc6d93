"""SIGKILL at random moments, and right after a database commit before the offset commit."""

from __future__ import annotations

import asyncio
import random
import signal
from dataclasses import replace
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.faults.stream import (
    SCALE,
    assert_everything_expired,
    assert_outcome,
    make_everything_due,
    make_stream,
    produce,
    seed_database,
    worker_settings,
)
from tests.kafka import keep_producer_time
from tests.worker_process import running_worker, worker_env

KILLS = 10 * SCALE
BATCH = 500  # records per batch at most, for an injected worker


async def test_killed_workers_lose_nothing_and_apply_nothing_twice(
    stack: Stack, db_url: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    stream = make_stream(20_000 * SCALE, 2_000 * SCALE)
    await seed_database(db_url, stream)
    env = worker_env(db_url, stack.kafka_bootstrap, **worker_settings())
    prefix, rng = env["KAFKA_TOPIC_PREFIX"], random.Random(7)  # noqa: S311 - reproducible choices
    await keep_producer_time(stack.kafka_bootstrap, env)
    # One slice of the stream per worker, in order: each worker has input of its own to be
    # killed in the middle of.
    size = -(-len(stream.events) // KILLS)
    assert size >= 4 * BATCH, "an injected worker's slice must fill four batches"
    slices = [
        replace(stream, events=stream.events[n : n + size]) for n in range(0, KILLS * size, size)
    ]
    killed, injected = 0, 0
    for part in slices:
        # Every third crash is injected at the worst moment: the batch's effects and results
        # are committed in PostgreSQL, its offsets are not. Its slice is on the broker before
        # the worker starts, so the worker has the batches to commit (at most 500 records each,
        # and the failpoint fires after the first to the fourth).
        inject = killed % 3 == 2
        extra = (
            {
                "WORKER_FAILPOINT_AFTER_DB_COMMIT": str(rng.randint(1, 4)),
                "WORKER_BATCH_MAX_RECORDS": str(BATCH),
            }
            if inject
            else {}
        )
        if inject:
            await produce(producer, prefix, part)
        async with running_worker({**env, **extra}, tmp_path) as worker:
            if inject:
                # The failpoint may fire before the worker is seen ready (after its first batch,
                # say): wait for the process to end, not for readiness.
                code = await asyncio.wait_for(worker.process.wait(), 90)
                assert code == -signal.SIGKILL, worker.log_tail()
                injected += 1
            else:
                await worker.wait_ready(within=90)  # the first worker creates the topics
                producing = asyncio.create_task(produce(producer, prefix, part, per_second=2_000))
                await asyncio.sleep(rng.uniform(0.3, 2.0))
                worker.process.kill()
                await producing
            await worker.process.wait()
            killed += 1
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready(within=90)
        figures = await assert_outcome(db_url, stack.kafka_bootstrap, prefix, stream)
        assert await worker.stop() == 0, worker.log_tail()

    # Every lot falls due at once; two workers sweep it, killed at random moments meanwhile.
    due = await make_everything_due(db_url)
    for _ in range(3):
        async with running_worker(env, tmp_path) as first, running_worker(env, tmp_path) as second:
            await asyncio.sleep(rng.uniform(0.5, 3.0))
            for worker in (first, second):
                worker.process.kill()
                await worker.process.wait()
    async with running_worker(env, tmp_path) as first, running_worker(env, tmp_path) as second:
        expired = await assert_everything_expired(db_url, stack.kafka_bootstrap, prefix, due)
        for worker in (first, second):
            assert await worker.stop() == 0, worker.log_tail()
    print(f"\nfaults: {killed} SIGKILLs ({injected} after a database commit), {figures}, "
          f"{expired} lots expired under 6 more")  # fmt: skip
