"""Three workers in one group; one is killed and another added mid-stream."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from pathlib import Path

from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.faults.stream import (
    SCALE,
    assert_outcome,
    make_stream,
    produce,
    seed_database,
    worker_settings,
)
from tests.kafka import keep_producer_time
from tests.worker_process import WorkerProcess, running_worker, worker_env

Interval = tuple[datetime, datetime, str]  # owned from, until, by which worker


def ownership(worker: WorkerProcess, name: str, end: datetime) -> dict[str, list[Interval]]:
    """Partition -> the intervals this worker owned it, from its assign and revoke logs."""
    owned: dict[str, datetime] = {}
    intervals: dict[str, list[Interval]] = {}
    for line in worker.log_path.read_text().splitlines():
        entry = json.loads(line)
        at = datetime.fromisoformat(entry["time"])
        if entry.get("action") == "assign":
            owned = dict.fromkeys(entry["partitions"], at)
        elif entry.get("action") in ("revoke", "consume_end"):
            for partition, since in owned.items():
                intervals.setdefault(partition, []).append((since, at, name))
            owned = {}
    for partition, since in owned.items():
        intervals.setdefault(partition, []).append((since, end, name))
    return intervals


async def test_three_workers_with_one_killed_and_one_added_apply_everything_once(
    stack: Stack, db_url: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    stream = make_stream(20_000 * SCALE, 2_000 * SCALE, seed_value=41)
    await seed_database(db_url, stream)
    env = worker_env(db_url, stack.kafka_bootstrap, WORKER_BATCH_MAX_RECORDS="100",
                     **worker_settings())  # fmt: skip
    prefix = env["KAFKA_TOPIC_PREFIX"]
    await keep_producer_time(stack.kafka_bootstrap, env)
    async with (
        running_worker(env, tmp_path) as one,
        running_worker(env, tmp_path) as two,
        running_worker(env, tmp_path) as three,
    ):
        for worker in (one, two, three):
            await worker.wait_ready(within=90)
        producing = asyncio.create_task(produce(producer, prefix, stream, per_second=2_500))
        await asyncio.sleep(2.0)
        two.process.kill()  # SIGKILL: it never says goodbye to the group
        await two.process.wait()
        killed_at = datetime.now().astimezone()
        await asyncio.sleep(1.0)
        async with running_worker(env, tmp_path) as four:
            await four.wait_ready(within=90)
            await producing
            figures = await assert_outcome(db_url, stack.kafka_bootstrap, prefix, stream)
            for worker in (one, three, four):
                assert await worker.stop() == 0, worker.log_tail()
    ended = datetime.now().astimezone()
    owners: dict[str, list[Interval]] = {}
    for name, worker, end in (("one", one, ended), ("two", two, killed_at),
                              ("three", three, ended), ("four", four, ended)):  # fmt: skip
        for partition, intervals in ownership(worker, name, end).items():
            owners.setdefault(partition, []).extend(intervals)
    # A partition is never owned by two workers at once: each revoke (which waits for the batch
    # in hand to commit) comes before the next owner's assignment.
    for partition, intervals in owners.items():
        intervals.sort()
        for (_, until, who), (since, _, next_owner) in itertools.pairwise(intervals):
            assert until <= since or who == next_owner, (partition, who, next_owner, until, since)
    assert len({who for intervals in owners.values() for *_, who in intervals}) == 4
    print(f"\nfaults: 3 workers, 1 SIGKILLed, 1 added, {figures}")
