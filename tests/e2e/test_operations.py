"""What an operator reads first (CONTRACT section 11), from a live worker's `/metrics`."""

from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.e2e.conftest import RunningWorker, StartWorker
from tests.events import completed, payment_request, send
from tests.support import eventually
from tests.unit.test_alerts import alerts
from tests.unit.test_dashboard import NOT_EXPORTED, metric_names, queries
from tests.worker_process import running_worker, worker_env
from worker.db.outbox import PUBLISHER_LOCK_KEY


def exported_names(text: str) -> set[str]:
    """Every sample name the families in `text` can export, with or without samples yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, ("",))
    }


async def samples(w: RunningWorker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's `/metrics`, by name and sorted labels."""
    text = (await w.worker.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def lag(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """The consumer lag series: `topic:partition` -> lag."""
    return {
        f"{dict(labels)['topic']}:{dict(labels)['partition']}": value
        for (name, labels), value in found.items()
        if name == "payment_worker_consumer_lag"
    }


async def test_lag_event_age_last_commit_readiness_and_the_process_are_exported(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker()
    started = time.time()
    for n in range(5):
        await send(producer, w.prefix, "course.completed", completed(f"s{n}", "c-1"), key=f"s{n}")

    async def applied() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        found = await samples(w)
        assert found[("payment_worker_event_age_seconds_count", ())] >= 5
        assigned = found[("payment_worker_assigned_partitions", ())]
        assert assigned > 0
        assert len(lag(found)) == assigned  # one series per partition this worker owns
        assert set(lag(found).values()) == {0.0}  # every record committed
        return found

    found = await eventually(applied, within=30)
    # The dashboard's and the alert rules' queries name only what a live worker exports.
    live = exported_names((await w.worker.get("/metrics")).text)
    for where, expr in [*queries(), *((str(r["alert"]), str(r["expr"])) for r in alerts())]:
        assert metric_names(expr) - NOT_EXPORTED <= live, where
    assert all(k.startswith(w.prefix) for k in lag(found))
    assert found[("payment_worker_last_commit_timestamp_seconds", ())] >= started
    assert found[("payment_worker_oldest_unpublished_seconds", ())] == 0
    assert found[("process_resident_memory_bytes", ())] > 0
    assert found[("process_cpu_seconds_total", ())] > 0
    # The collector's own series, by generation; and the worker's full collection every 10 s
    # whatever the count of allocations (an idle worker's come from it alone).
    full = ("python_gc_collections_total", (("generation", "2"),))
    before = found[full]

    async def collected_again() -> None:
        assert (await samples(w))[full] > before

    await eventually(collected_again, within=30, interval=0.5)


async def test_readiness_is_kept_current_without_anyone_asking_readyz(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    async with running_worker(env, tmp_path) as worker:

        async def ready() -> None:
            assert worker.process.returncode is None, worker.log_tail()
            try:
                text = (await worker.get("/metrics")).text  # never /readyz
            except httpx.TransportError as exc:
                raise AssertionError(f"sidecar not answering yet: {exc}") from exc
            assert "payment_worker_ready 1.0" in text.splitlines()

        await eventually(ready, within=60, interval=0.5)
        assert await worker.stop() == 0, worker.log_tail()


async def test_lag_grows_while_a_batch_cannot_commit_and_falls_back_when_it_can(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker()
    await send(producer, w.prefix, "course.completed", completed("ada", "c-0"), key="ada")
    await eventually(lambda: _caught_up(w), within=30)
    blocker = await asyncpg.connect(w.database_url)
    try:
        # The wallets are the first thing a coin batch locks: it waits, and commits nothing.
        async with blocker.transaction():
            await blocker.execute("LOCK TABLE coin_wallets IN ACCESS EXCLUSIVE MODE")
            for n in range(1, 8):
                data = completed("ada", f"c-{n}")
                await send(producer, w.prefix, "course.completed", data, key="ada")

            async def behind() -> None:
                assert sum(lag(await samples(w)).values()) == 7

            await eventually(behind, within=30)
    finally:
        await blocker.close()
    await eventually(lambda: _caught_up(w), within=30)


async def _caught_up(w: RunningWorker) -> None:
    found = lag(await samples(w))
    assert found
    assert set(found.values()) == {0.0}


async def test_the_oldest_unpublished_age_grows_while_publishing_is_held_and_then_falls(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker()
    holder = await asyncpg.connect(w.database_url)
    try:
        # Hold the publisher's lock as another worker's relay would: the outbox fills.
        await holder.execute("SELECT pg_advisory_lock($1)", PUBLISHER_LOCK_KEY)
        await send(producer, w.prefix, "payment.requested", payment_request("p-1", "ada"),
                   key="ada")  # fmt: skip

        async def waiting() -> None:
            found = await samples(w)
            assert found[("payment_worker_outbox_backlog", ())] >= 1
            assert found[("payment_worker_oldest_unpublished_seconds", ())] >= 2

        await eventually(waiting, within=30)
        await holder.execute("SELECT pg_advisory_unlock($1)", PUBLISHER_LOCK_KEY)

        async def published() -> None:
            found = await samples(w)
            assert found[("payment_worker_outbox_backlog", ())] == 0
            assert found[("payment_worker_oldest_unpublished_seconds", ())] == 0

        await eventually(published, within=30)
    finally:
        await holder.close()


async def test_a_partition_s_lag_series_moves_with_it_to_another_member(
    start_worker: StartWorker,
) -> None:
    first = await start_worker()
    alone: dict[str, float] = {}

    async def owns_all() -> None:
        found = await samples(first)
        alone.update(lag(found))
        assert len(alone) == found[("payment_worker_assigned_partitions", ())] > 0

    await eventually(owns_all, within=30)
    second = await start_worker(KAFKA_TOPIC_PREFIX=first.prefix, KAFKA_CONSUMER_GROUP=first.group)

    async def shared() -> None:
        mine, theirs = lag(await samples(first)), lag(await samples(second))
        assert mine
        assert theirs
        assert not mine.keys() & theirs.keys()  # no partition reported by both
        assert mine.keys() | theirs.keys() == alone.keys()

    await eventually(shared, within=60)
