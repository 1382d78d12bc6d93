"""Records the Kafka client cannot parse: find them, dead-letter them by coordinates, go on.

aiokafka's `getmany` raises on a record it cannot parse (a header name that is not UTF-8, a
corrupt batch) without saying which partition, and raises again on every call until the record
is stepped past. Worse, records of other partitions taken by the same call are dropped with the
error although their positions moved on. So, on such an error, every owned partition is first
sought back to its committed offset (nothing taken is lost); then each partition is read alone
(a call for one partition touches no other's records) until one raises; that one is read a
record at a time up to the record, which is dead-lettered by its coordinates, committed past
and sought past.

The consume lane's lock is held only while a batch is applied or a record dead-lettered, never
while reading: a rebalance waits for the lock in its listener, and must be able to proceed.
Each lane of the consume loop has its own finder, for its own partitions: the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError
from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

# What aiokafka raises for a record it cannot parse (its C parser raises UnicodeDecodeError for
# a header name that is not UTF-8; its Python parser, CorruptRecordException).
UNREADABLE = (UnicodeDecodeError, CorruptRecordException)

Batch = dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
# Dead-letters a record the client cannot parse, by topic, partition and offset.
UnreadableHandler = Callable[[str, int, int, BaseException], Awaitable[None]]


class UnreadableRecords:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        lock: asyncio.Lock,
        handle: Callable[[Batch], Awaitable[None]],
        dead_letter: UnreadableHandler,
        commit: Callable[[dict[TopicPartition, int]], Awaitable[None]],
        max_records: int,
        mine: Callable[[TopicPartition], bool] = lambda tp: True,
        generation: Callable[[], int] = lambda: 0,
    ) -> None:
        """`mine`: the partitions this finder reads and rewinds (its consume lane's); a lane's
        `getmany` asks for its own partitions alone, so only they can hold the record.
        `generation`: raised by every revocation; records read before one are not applied
        after it (the new assignment reads them again from the committed offsets)."""
        self._mine = mine
        self._generation = generation
        self._consumer = consumer
        self._lock = lock
        self._handle = handle
        self._dead_letter = dead_letter
        self._commit = commit
        self._max_records = max_records

    async def find(self, within: float = 10.0) -> None:
        """Step past the record that made `getmany` fail; apply the others' records meanwhile.

        The failing partition's records are being fetched again, so it may take a few passes.
        Found nothing within `within` seconds: consuming goes on as usual (and comes back here
        if the record is still there).
        """
        await self._rewind()
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for tp in self._owned():
                try:
                    batch = await self._consumer.getmany(
                        tp, timeout_ms=0, max_records=self._max_records
                    )
                except UNREADABLE:
                    await self._step_past(tp)
                    return
                except IllegalStateError:  # revoked since: its next owner reads it
                    continue
                if batch:
                    await self._apply(batch, self._generation())
            await asyncio.sleep(0.05)

    async def _rewind(self) -> None:
        """Seek every owned partition back to its committed offset: the failed call may have
        moved positions past records it then dropped."""
        for tp in self._owned():
            try:
                committed = await self._consumer.committed(tp)
                if committed is None:
                    await self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, committed)
            except IllegalStateError:
                continue

    def _owned(self) -> list[TopicPartition]:
        return sorted(tp for tp in self._consumer.assignment() if self._mine(tp))

    async def _step_past(self, tp: TopicPartition) -> None:
        """Read `tp` one record at a time up to the record that cannot be parsed; dead-letter it
        and seek past it. aiokafka parses a whole producer batch to reach any record of it, so
        the records after it in the same batch cannot be read either: each is dead-lettered the
        same way, until a record is read again."""
        held: list[ConsumerRecord[bytes, bytes]] = []
        stepped = False
        generation = self._generation()
        while tp in self._consumer.assignment() and self._generation() == generation:
            try:
                batch = await self._consumer.getmany(tp, timeout_ms=1_000, max_records=1)
            except UNREADABLE as exc:
                async with self._lock:
                    if self._generation() != generation:
                        return  # revoked meanwhile: the new assignment reads them again
                    if held:
                        await self._handle({tp: held})
                        held = []
                    if tp not in self._consumer.assignment():
                        break  # revoked meanwhile: its next owner finds the record
                    offset = await self._consumer.position(tp)
                    await self._dead_letter(tp.topic, tp.partition, offset, exc)
                    await self._commit({tp: offset + 1})
                    self._consumer.seek(tp, offset + 1)
                stepped = True
                continue
            except IllegalStateError:
                break
            if self._generation() != generation:
                # This fetch waited out a rebalance and read from the new assignment's
                # positions: what was held before is read again from the committed offsets.
                held, generation = [], self._generation()
            held.extend(batch.get(tp, []))
            if not batch or stepped or len(held) >= self._max_records:
                break
        if held:
            await self._apply({tp: held}, generation)

    async def _apply(self, batch: Batch, generation: int) -> None:
        """Apply `batch`, read at `generation`, unless a revocation came since."""
        async with self._lock:
            if self._generation() == generation:
                await self._handle(batch)
