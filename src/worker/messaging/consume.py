"""The consume loop: getmany, apply the batch, then commit exactly what was applied."""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, CorruptRecordException
from aiokafka.structs import ConsumerRecord

from worker.core.records import InboundRecord
from worker.metrics import Metrics

log = logging.getLogger(__name__)

BatchProcessor = Callable[[Sequence[InboundRecord]], Awaitable[None]]
# Dead-letters a record the client cannot parse, by topic, partition and offset.
UnreadableHandler = Callable[[str, int, int, BaseException], Awaitable[None]]

# What aiokafka raises from getmany for a record it cannot parse: a header name that is not
# UTF-8 (its C parser), a corrupt batch. It does not say which partition, and raises again on
# every call until the record is stepped past.
UNREADABLE = (UnicodeDecodeError, CorruptRecordException)


def to_inbound(record: ConsumerRecord[bytes, bytes]) -> InboundRecord:
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


class PartitionGuard(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until the batch in hand is applied and committed.

    Without it a partition could be processed by the old and the new owner at once; with it the
    new owner starts from the offset this worker committed last.
    """

    def __init__(self, lock: asyncio.Lock, metrics: Metrics) -> None:
        self._lock = lock
        self._metrics = metrics
        self.joined = False

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.joined = False
        async with self._lock:
            log.info("partitions revoked", extra={"action": "revoke", "partitions": len(revoked)})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True
        self._metrics.assigned_partitions.set(len(assigned))
        log.info(
            "partitions assigned",
            extra={
                "action": "assign",
                "partitions": sorted(f"{t.topic}-{t.partition}" for t in assigned),
            },
        )


class ConsumeLoop:
    """Owns the consumer between start and stop; one batch at a time."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        process: BatchProcessor,
        metrics: Metrics,
        *,
        unreadable: UnreadableHandler,
        max_records: int,
        max_wait_ms: int,
        on_committed: Callable[[], None] = lambda: None,
        failpoint_after_db_commit: int = 0,
    ) -> None:
        self._failpoint = failpoint_after_db_commit
        self._batches = 0
        self._consumer = consumer
        self._process = process
        self._unreadable = unreadable
        self._metrics = metrics
        self._max_records = max_records
        self._max_wait_ms = max_wait_ms
        self._on_committed = on_committed
        self._lock = asyncio.Lock()
        self.guard = PartitionGuard(self._lock, metrics)
        consumer.subscribe(list(topics), listener=self.guard)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batch in hand when it is set is finished first."""
        while not stop.is_set():
            try:
                batch = await self._consumer.getmany(
                    timeout_ms=self._max_wait_ms, max_records=self._max_records
                )
            except UNREADABLE as exc:
                log.error(  # noqa: TRY400 - the record, not the stack, is what to look at
                    "a record cannot be parsed; finding it",
                    extra={"action": "unreadable", "error": f"{type(exc).__name__}: {exc}"},
                )
                async with self._lock:
                    await self._find_unreadable()
                continue
            if batch:
                async with self._lock:
                    await self._handle(batch)
        # No batch is processed after this line: the partitions are free for their next owner.
        log.info("consuming stopped", extra={"action": "consume_end"})

    async def _handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        started = time.perf_counter()
        # One student's events of different types sit on different topics; merging partitions by
        # record timestamp (stable, so each partition keeps its own order) applies a redemption
        # after the credits produced before it in the same batch.
        merged = heapq.merge(*batch.values(), key=lambda record: record.timestamp)
        records = [to_inbound(r) for r in merged]
        await self._process(records)
        self._batches += 1
        if self._batches == self._failpoint:
            log.warning("failpoint: killed after a database commit", extra={"action": "failpoint"})
            os.kill(os.getpid(), signal.SIGKILL)
        await self._commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        self._on_committed()
        self._metrics.batch_size.observe(len(records))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _find_unreadable(self, within: float = 10.0) -> None:
        """Read each partition alone until one raises, then step past its unreadable record.

        The failing partition's records were dropped by the failed call and are being fetched
        again, so it may take a few passes; the others' records are applied meanwhile. Found
        nothing within `within` seconds: consuming goes on as usual (and comes back here if the
        record is still there).
        """
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for tp in sorted(self._consumer.assignment()):
                try:
                    batch = await self._consumer.getmany(
                        tp, timeout_ms=0, max_records=self._max_records
                    )
                except UNREADABLE:
                    await self._step_past(tp)
                    return
                if batch:
                    await self._handle(batch)
            await asyncio.sleep(0.05)

    async def _step_past(self, tp: TopicPartition) -> None:
        """Read `tp` one record at a time up to the record that cannot be parsed; dead-letter it
        by its coordinates and seek past it. aiokafka parses a whole producer batch to reach any
        record of it, so the records after it in the same batch cannot be read either: each is
        dead-lettered the same way, until a record is read again."""
        held: list[ConsumerRecord[bytes, bytes]] = []
        stepped = False
        while True:
            try:
                batch = await self._consumer.getmany(tp, timeout_ms=1_000, max_records=1)
            except UNREADABLE as exc:
                if held:
                    await self._handle({tp: held})
                    held = []
                offset = await self._consumer.position(tp)
                await self._unreadable(tp.topic, tp.partition, offset, exc)
                await self._commit({tp: offset + 1})
                self._consumer.seek(tp, offset + 1)
                stepped = True
                continue
            held.extend(batch.get(tp, []))
            if not batch or stepped or len(held) >= self._max_records:
                break
        if held:
            await self._handle({tp: held})

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit after the database commit; partitions lost meanwhile are left to their owner."""
        owned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
        except CommitFailedError:
            # The group moved on; the new owner re-reads from the last committed offset and the
            # ledger's idempotency keys make those records no-ops.
            self._metrics.commits_failed.inc()
            log.warning("offset commit refused after rebalance", extra={"action": "commit_failed"})
