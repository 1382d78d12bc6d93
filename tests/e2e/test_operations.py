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
from tests.events import completed, send
from tests.support import eventually
from tests.unit.test_alerts import alerts
from tests.unit.test_dashboard import NOT_EXPORTED, metric_names, queries
from tests.worker_process import running_worker, worker_env


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
