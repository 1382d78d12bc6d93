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
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from worker.core.records import InboundRecord
from worker.messaging.clients import coordinator_known
from worker.messaging.unreadable import UNREADABLE, UnreadableHandler, UnreadableRecords
from worker.metrics import Metrics

log = logging.getLogger(__name__)

BatchProcessor = Callable[[Sequence[InboundRecord]], Awaitable[None]]


def to_inbound(record: ConsumerRecord[bytes, bytes]) -> InboundRecord:
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
    )


def in_timestamp_order(
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
) -> list[InboundRecord]:
    """A batch's records merged by record timestamp, each partition keeping its own order.

    One student's events of different types sit on different topics: in this order a redemption
    is applied after the credits produced before it in the same batch.
    """
    merged = heapq.merge(*batch.values(), key=lambda record: record.timestamp)
    return [to_inbound(r) for r in merged]


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
        dead_letter: UnreadableHandler,
        max_records: int,
        max_wait_ms: int,
        on_committed: Callable[[], None] = lambda: None,
        failpoint_after_db_commit: int = 0,
    ) -> None:
        self._failpoint = failpoint_after_db_commit
        self._batches = 0
        self._consumer = consumer
        self._process = process
        self._metrics = metrics
        self._max_records = max_records
        self._max_wait_ms = max_wait_ms
        self._on_committed = on_committed
        self._lock = asyncio.Lock()
        self.guard = PartitionGuard(self._lock, metrics)
        self._unreadable = UnreadableRecords(
            consumer, self._lock, self._handle, dead_letter, self._commit, max_records
        )
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
                await self._unreadable.find()
                continue
            if batch:
                async with self._lock:
                    await self._handle(batch)
        # No batch is processed after this line: the partitions are free for their next owner.
        log.info("consuming stopped", extra={"action": "consume_end"})

    def in_group(self) -> bool:
        """Whether the consumer holds its partitions and knows its group coordinator (what
        `/readyz` reports as `kafka_group`)."""
        return self.guard.joined and coordinator_known(self._consumer)

    async def _handle(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        started = time.perf_counter()
        records = in_timestamp_order(batch)
        await self._process(records)
        self._batches += 1
        if self._batches == self._failpoint:
            log.warning("failpoint: killed after a database commit", extra={"action": "failpoint"})
            os.kill(os.getpid(), signal.SIGKILL)
        await self._commit({tp: rs[-1].offset + 1 for tp, rs in batch.items()})
        self._on_committed()
        self._metrics.batch_size.observe(len(records))
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

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
