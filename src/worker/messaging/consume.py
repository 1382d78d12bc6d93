"""The consume loop: getmany, apply the batch, publish its results, then commit its offsets.

The publishing and committing of one batch overlap the applying of the next: batch N's results
go out and its offsets commit while batch N+1 is decided in the database. Batch N+1's results
are sent only after batch N's are acknowledged and its offsets committed, so results keep the
order they were decided in and committed offsets only move forward.

With more than one lane (`WORKER_CONCURRENT_BATCHES`), each lane does this for its own share of
the partitions: those whose number, modulo the lane count, is the lane's. One student's events
of every coin topic share a partition number (keyed and hashed alike), so they share a lane,
and their order holds; while one lane's batch waits on the database, another's is decoded and
decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord

from worker.core.messages import OutgoingMessage
from worker.core.records import InboundRecord
from worker.messaging.clients import coordinator_known
from worker.messaging.unreadable import UNREADABLE, UnreadableHandler, UnreadableRecords
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)

# Applies a batch; returns the messages to publish before its offsets are committed. With
# `queue_all` it queues every message in the outbox instead (and returns none).
BatchProcessor = Callable[[Sequence[InboundRecord], bool], Awaitable[Sequence[OutgoingMessage]]]
# Returns once the broker has taken every message (or the ones it refuses for good are parked).
Publisher = Callable[[Sequence[OutgoingMessage]], Awaitable[None]]


async def _nothing_queued() -> bool:
    return False


def aligned(
    assigned: Collection[TopicPartition],
    together: Collection[str],
    partitions_of: Callable[[str], Collection[int] | None],
) -> bool:
    """Whether the topics `together` have one partition count and this member owns, for each
    partition number it owns of one of them, that partition of all of them. Then one student's
    events of all those topics (keyed by the student, hashed alike) reach this member alone."""
    numbers = {tp.partition for tp in assigned if tp.topic in together}
    if not numbers:
        return True  # none of them here: nothing to keep in order
    counts = set()
    for topic in together:
        partitions = partitions_of(topic)
        counts.add(None if partitions is None else len(partitions))
    if len(counts) > 1 or None in counts:
        return False
    return all(TopicPartition(t, p) in assigned for t in together for p in numbers)


def to_inbound(record: ConsumerRecord[bytes, bytes]) -> InboundRecord:
    return InboundRecord(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers),
        appended_at=appended_at(record),
    )


# How long a lane that owns no partition waits before it looks again (they come with a
# rebalance), fetching a partition no one has: aiokafka takes a member none of whose tasks
# fetched for `max_poll_interval_ms` for a stalled one, which leaves the group.
_IDLE_LANE_MS = 200
# How long `between_batches` waits for the broker's answers about a lane's partitions.
_LOOKUP_SECONDS = 5.0
_NO_PARTITION = TopicPartition("", -1)

# The record timestamp type of a topic with message.timestamp.type=LogAppendTime.
LOG_APPEND_TIME = 1


def appended_at(record: ConsumerRecord[bytes, bytes]) -> datetime | None:
    """When the broker appended `record`, if its topic records that; None for a producer's
    timestamp (CreateTime), which says only what its producer chose."""
    if record.timestamp_type != LOG_APPEND_TIME or record.timestamp < 0:
        return None
    return datetime.fromtimestamp(record.timestamp / 1000, UTC)


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
    """Holds a rebalance until the batches in hand are applied, published and committed.

    Without it a partition could be processed by the old and the new owner at once; with it the
    new owner starts from the offset this worker committed last.
    """

    def __init__(
        self,
        lock: contextlib.AbstractAsyncContextManager[Any],
        metrics: Metrics,
        settle: Callable[[], Awaitable[None]],
        check_alignment: Callable[[set[TopicPartition]], None],
    ) -> None:
        self._lock = lock
        self._metrics = metrics
        self._settle = settle
        self._check_alignment = check_alignment
        self.joined = False
        self.generation = 0

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.joined = False
        self.generation += 1  # a batch taken before this is not applied after it
        async with self._lock:
            await self._settle()
            log.info("partitions revoked", extra={"action": "revoke", "partitions": len(revoked)})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.joined = True
        self._check_alignment(assigned)
        self._metrics.assigned_partitions.set(len(assigned))
        log.info(
            "partitions assigned",
            extra={
                "action": "assign",
                "partitions": sorted(f"{t.topic}-{t.partition}" for t in assigned),
            },
        )


class _Lane:
    """One share of the partitions (`of` lanes): a batch of them applied at a time, and the one
    before it published and committed meanwhile."""

    def __init__(self, index: int, of: int) -> None:
        self.index = index
        self.of = of
        self.lock = asyncio.Lock()
        # The batch before the one in hand, being published and committed.
        self.finishing: asyncio.Task[None] | None = None
        # Whether this lane found no coin result queued in the outbox since the assignment. Per
        # lane: another lane's check cannot see the results this lane is queueing meanwhile.
        self.outbox_checked = False

    def owns(self, tp: TopicPartition) -> bool:
        partition: int = tp.partition
        return partition % self.of == self.index

    def partitions(self, assigned: Collection[TopicPartition]) -> list[TopicPartition] | None:
        """What this lane asks `getmany` for: None (every partition) when it is the only lane."""
        if self.of == 1:
            return None
        return sorted(tp for tp in assigned if self.owns(tp))


class _AllLanes(contextlib.AbstractAsyncContextManager[None]):
    """Every lane's lock, taken in lane order: what a rebalance holds."""

    def __init__(self, lanes: Sequence[_Lane]) -> None:
        self._lanes = lanes

    async def __aenter__(self) -> None:
        taken: list[asyncio.Lock] = []
        try:
            for lane in self._lanes:
                await lane.lock.acquire()
                taken.append(lane.lock)
        except BaseException:
            for lock in taken:
                lock.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        for lane in self._lanes:
            lane.lock.release()


class ConsumeLoop:
    """Owns the consumer between start and stop. Each lane applies one batch at a time, and
    publishes and commits the one before it meanwhile (`lanes` of them, each for its share of
    the partitions).

    Results go out from memory only while this member owns the same partition numbers of all
    `ordered_together` topics (the coin inputs; `aligned`). Else (a group whose members agreed
    on another assignor, topics of different partition counts) one student's results could
    leave two members out of order, so every result is queued in the outbox, whose one
    publisher keeps decision order; that is logged at ERROR on each such assignment.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: Sequence[str],
        process: BatchProcessor,
        publish: Publisher,
        metrics: Metrics,
        *,
        ordered_together: Collection[str] = (),
        coin_results_queued: Callable[[], Awaitable[bool]] = _nothing_queued,
        dead_letter: UnreadableHandler,
        max_records: int,
        max_wait_ms: int,
        on_committed: Callable[[], None] = lambda: None,
        failpoint_after_db_commit: int = 0,
        lanes: int = 1,
    ) -> None:
        self._failpoint = failpoint_after_db_commit
        self._batches = 0
        self._consumer = consumer
        self._process = process
        self._publish = publish
        self._ordered_together = ordered_together
        self._coin_results_queued = coin_results_queued
        self._aligned = True
        self._metrics = metrics
        self._max_records = max_records
        self._max_wait_ms = max_wait_ms
        self._on_committed = on_committed
        self._lanes = [_Lane(index, lanes) for index in range(lanes)]
        # The group's committed offset of each assigned partition, for the lag: asked once per
        # assignment (None: none committed), then this worker's own commits.
        self._committed: dict[TopicPartition, int | None] = {}
        # Where the log of each of this assignment's coin partitions began and ended when a
        # step between batches first looked (`between_batches`).
        self._horizon: dict[TopicPartition, tuple[int, int]] = {}
        self._running = False
        self._stop = asyncio.Event()  # `run`'s
        self._lag_reported: set[TopicPartition] = set()
        # What stopped a batch from going out: raised by `run`.
        self._failed: BaseException | None = None
        self.guard = PartitionGuard(
            _AllLanes(self._lanes), metrics, self._settle_for_rebalance, self._check_alignment
        )
        self._unreadable = {
            lane.index: UnreadableRecords(
                consumer,
                lane.lock,
                functools.partial(self._handle_settled, lane),
                dead_letter,
                self._commit,
                max_records,
                mine=lane.owns,
                generation=lambda: self.guard.generation,
            )
            for lane in self._lanes
        }
        consumer.subscribe(list(topics), listener=self.guard)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; the batches in hand when it is set are finished first.
        The first lane to fail stops the others, and its error is raised."""
        lanes = [asyncio.create_task(self._run_lane(lane, stop)) for lane in self._lanes]
        self._running, self._stop = True, stop
        try:
            done, _ = await asyncio.wait(lanes, return_when=asyncio.FIRST_EXCEPTION)
            for task in lanes:
                if task in done and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            self._raise_failure()  # one a rebalance met while stopping
        finally:
            self._running = False  # a batch cut short may be applied and not published
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)
            async with _AllLanes(self._lanes):
                pass  # a step between batches under way ends before the partitions are free
        # No batch is processed after this line: the partitions are free for their next owner.
        log.info("consuming stopped", extra={"action": "consume_end"})

    async def _run_lane(self, lane: _Lane, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self._raise_failure()
                partitions = lane.partitions(self._consumer.assignment())
                if partitions == []:  # none of this lane's now: look again soon
                    await self._consumer.getmany(_NO_PARTITION, timeout_ms=_IDLE_LANE_MS)
                    continue
                try:
                    batch = await self._consumer.getmany(
                        *partitions or (),
                        timeout_ms=self._max_wait_ms,
                        max_records=self._max_records,
                    )
                except UNREADABLE as exc:
                    log.error(  # noqa: TRY400 - the record, not the stack, is what to look at
                        "a record cannot be parsed; finding it",
                        extra={"action": "unreadable", "error": f"{type(exc).__name__}: {exc}"},
                    )
                    async with lane.lock:  # it rewinds to the committed offsets
                        await self._settle(lane)
                    await self._unreadable[lane.index].find()
                    continue
                # Read as the call returns, with no await since: aiokafka's getmany waits out a
                # rebalance and then returns records read from the new assignment's positions.
                generation = self.guard.generation
                if batch:
                    async with lane.lock:
                        # Taken before a rebalance: the new assignment reads these records
                        # again from the committed offsets.
                        if self.guard.generation == generation:
                            await self._handle(lane, batch)
            async with lane.lock:
                await self._settle(lane)
        finally:
            finishing, lane.finishing = lane.finishing, None
            if finishing is not None:  # cut short: its offsets stay uncommitted
                finishing.cancel()

    async def between_batches(self, step: Callable[[frozenset[int]], Awaitable[int]]) -> int:
        """Run `step` once in each lane, between two of its batches, with the numbers of the
        lane's partitions of the `ordered_together` topics that are caught up (`_caught_up`),
        once the lane's batches before are published: so the coin results `step` decides (an
        expiry) follow theirs in their students' order. `step` queues its results in the
        outbox and returns how many things it did: the lane's next batches then look there
        first, and go through the outbox too until it is published, so they follow them.
        Returns the sum of the steps' counts.

        No step runs while the member is between two assignments or has lost its coordinator,
        while its assignment is unaligned, or once `run` has ended or failed (a batch may be
        applied and not published: its replay must come first). Each lane is held for one
        `step` only (callers loop); a rebalance waits for it. What `_caught_up` asks the broker
        is asked before the lane's lock is taken, within `_LOOKUP_SECONDS`."""
        done = 0
        for lane in self._lanes:
            if not self._steady():
                break
            generation = self.guard.generation
            try:
                async with asyncio.timeout(_LOOKUP_SECONDS):
                    numbers = await self._caught_up(lane, generation)
            except Exception as exc:  # noqa: BLE001 - the other lanes go on
                log.warning(
                    "the broker did not say whether a lane's partitions are caught up; its "
                    "lots wait for the next sweep",
                    extra={"action": "lane_lookup", "error": f"{type(exc).__name__}: {exc}"},
                )
                continue
            if not numbers:
                continue
            async with lane.lock:
                if not self._steady() or self.guard.generation != generation:
                    break
                finishing = lane.finishing
                if finishing is not None:
                    await asyncio.wait({finishing})
                    if finishing.cancelled() or finishing.exception() is not None:
                        continue  # not published: the lane stops and raises it (`run`)
                if not self._steady() or self.guard.generation != generation:
                    break
                try:
                    count = await step(numbers)
                except BaseException:
                    lane.outbox_checked = False  # it may have committed, its answer lost
                    raise
                if count:
                    lane.outbox_checked = False
                done += count
        return done

    def _steady(self) -> bool:
        """Whether this member may decide for its partitions outside a batch now."""
        return (
            self._running
            and not self._stop.is_set()
            and self._failed is None
            and self._aligned
            and self.in_group()
        )

    async def _caught_up(self, lane: _Lane, generation: int) -> frozenset[int]:
        """The numbers of the lane's coin partitions whose committed offsets, of every coin
        topic, reached where their logs ended when it first looked in this assignment (none
        if the `generation` ended meanwhile). A member that died between a database commit and
        its publish left results that only the replay of their records publishes: no later
        decision may go out before them."""
        mine = [
            tp
            for tp in self._consumer.assignment()
            if tp.topic in self._ordered_together and lane.owns(tp)
        ]
        if not mine:
            return frozenset()
        if missing := [tp for tp in mine if tp not in self._horizon]:
            starts = await self._consumer.beginning_offsets(missing)
            ends = await self._consumer.end_offsets(missing)
            if self.guard.generation != generation:
                return frozenset()  # of an assignment gone: not kept for the next
            self._horizon.update({tp: (starts[tp], ends[tp]) for tp in missing})
        behind = set()
        for tp in mine:
            if tp not in self._committed:
                await self._ask_committed(tp, generation)
            if self.guard.generation != generation:
                return frozenset()
            start, end = self._horizon[tp]
            if max(self._committed[tp] or 0, start) < end:
                behind.add(tp.partition)
        return frozenset(tp.partition for tp in mine) - behind

    async def _ask_committed(self, tp: TopicPartition, generation: int) -> None:
        """Keep the group's committed offset of `tp`, unless this member committed one
        meanwhile or the assignment of `generation` ended."""
        committed = await self._consumer.committed(tp)
        if self.guard.generation == generation:
            self._committed.setdefault(tp, committed)

    def in_group(self) -> bool:
        """Whether the consumer holds its partitions and knows its group coordinator (what
        `/readyz` reports as `kafka_group`)."""
        return self.guard.joined and coordinator_known(self._consumer)

    async def _handle(
        self, lane: _Lane, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Apply `batch`, then leave it publishing and committing while the lane's next batch is
        applied."""
        started = time.perf_counter()
        records = in_timestamp_order(batch)
        messages = await self._process(records, not await self._publishing_from_memory(lane))
        self._observe_ages(batch)
        self._batches += 1
        if self._batches == self._failpoint:
            log.warning("failpoint: killed after a database commit", extra={"action": "failpoint"})
            os.kill(os.getpid(), signal.SIGKILL)
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
        await self._settle(lane)  # the batch before goes out and commits first
        lane.finishing = asyncio.create_task(self._finish(messages, offsets, len(records), started))
        lane.finishing.add_done_callback(self._note_failure)

    def _observe_ages(
        self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Each record's age now that its batch is applied: now minus its timestamp (a
        producer's clock ahead of this one counts as 0)."""
        now_ms = time.time() * 1000
        self._metrics.event_age.observe_many(
            max(0.0, now_ms - record.timestamp) / 1000
            for records in batch.values()
            for record in records
        )

    async def report_lag(self, every_seconds: float = 5.0) -> None:
        """Refresh the lag of each assigned partition every `every_seconds` until cancelled:
        its log end offset minus the group's committed offset. A refresh that fails or takes
        longer than the interval (a broker away) is logged, and the series are removed until
        one succeeds: an unknown lag is absent, never a stale number."""
        while True:
            try:
                async with asyncio.timeout(every_seconds):
                    await self._report_lag()
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the worker
                self._forget_lag(set())
                log.warning("consumer lag not refreshed", extra={
                    "action": "lag", "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            await asyncio.sleep(every_seconds)

    async def _report_lag(self) -> None:
        assigned = set(self._consumer.assignment())
        self._forget_lag(assigned)
        if not assigned:
            return
        partitions = sorted(assigned)
        generation = self.guard.generation
        ends = await self._consumer.end_offsets(partitions)
        for tp in partitions:
            if tp not in self._committed:  # asked once per assignment; then this member's own
                await self._ask_committed(tp, generation)
        if self.guard.generation != generation:
            return  # the next refresh reports the new assignment
        never = [tp for tp in partitions if self._committed[tp] is None]
        starts = await self._consumer.beginning_offsets(never) if never else {}
        for tp in partitions:
            committed = self._committed[tp]
            behind = ends[tp] - (starts[tp] if committed is None else committed)
            self._lag_reported.add(tp)
            self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(0, behind)
            )

    def _forget_lag(self, keep: set[TopicPartition]) -> None:
        """Remove the lag series of the partitions not in `keep` (gone to another member)."""
        for tp in self._lag_reported - keep:
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self._lag_reported &= keep

    async def _handle_settled(
        self, lane: _Lane, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Apply, publish and commit `batch` before returning."""
        await self._handle(lane, batch)
        await self._settle(lane)

    async def _finish(
        self,
        messages: Sequence[OutgoingMessage],
        offsets: dict[TopicPartition, int],
        size: int,
        started: float,
    ) -> None:
        await self._publish(messages)
        await self._commit(offsets)
        self._on_committed()
        self._metrics.batch_size.observe(size)
        self._metrics.batch_seconds.observe(time.perf_counter() - started)

    async def _settle(self, lane: _Lane) -> None:
        """Wait until the lane's batch before is published and committed; raise what stopped
        it."""
        finishing, lane.finishing = lane.finishing, None
        if finishing is not None:
            await finishing

    def _note_failure(self, finishing: asyncio.Task[None]) -> None:
        """Keep what stopped a batch from going out, for `run` to raise at once: the next batch
        may be long in coming."""
        if not finishing.cancelled() and finishing.exception() is not None:
            self._failed = finishing.exception()

    async def _publishing_from_memory(self, lane: _Lane) -> bool:
        """Whether this batch's coin results may go out from memory: the assignment is aligned,
        and no coin result of an earlier assignment still waits in the outbox. (Within one
        assignment no member queues a result for this member's students: a member that shares
        a partition number with another is unaligned, and so is the other.)"""
        if not self._aligned:
            return False
        if not lane.outbox_checked:
            async for attempt in transient_retry():  # the database may be away a while
                with attempt:
                    queued = await self._coin_results_queued()
            if queued:
                return False
            lane.outbox_checked = True
        return True

    def _raise_failure(self) -> None:
        if self._failed is not None:
            raise self._failed

    async def _settle_for_rebalance(self) -> None:
        """`_settle` of every lane for the rebalance listener, whose errors aiokafka would only
        log: what stopped a batch is raised by `run` instead (`_note_failure`). Each batch stays
        where `run` can cancel it if it is cut short: the listener then returns too, and the
        consumer leaves cleanly.

        Until the next assignment is checked, results go through the outbox: aiokafka may hand
        a lane records of the new assignment before `on_partitions_assigned` runs."""
        for lane in self._lanes:
            finishing = lane.finishing
            if finishing is not None:
                await asyncio.wait({finishing})
                if lane.finishing is finishing:
                    lane.finishing = None
        self._aligned = False
        self._horizon.clear()
        for lane in self._lanes:
            lane.outbox_checked = False

    def _check_alignment(self, assigned: set[TopicPartition]) -> None:
        self._committed.clear()  # another member may have committed since: asked again
        self._horizon.clear()
        self._aligned = aligned(
            assigned, self._ordered_together, self._consumer.partitions_for_topic
        )
        # Coin results an earlier assignment queued (this member's or another's, unaligned then)
        # must reach the broker before this member publishes later ones from memory.
        for lane in self._lanes:
            lane.outbox_checked = False
        if not self._aligned:
            log.error(
                "this member does not own the same partitions of every coin input topic (a "
                "member with another assignor, or unequal partition counts): coin results "
                "go through the outbox until it does",
                extra={"action": "unaligned", "topics": sorted(self._ordered_together)},
            )

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit after the database commit; partitions lost meanwhile are left to their owner."""
        owned = self._consumer.assignment()
        mine = {tp: offset for tp, offset in offsets.items() if tp in owned}
        if not mine:
            return
        try:
            await self._consumer.commit(mine)
            self._committed.update(mine)
            self._metrics.last_commit.set_to_current_time()
        except CommitFailedError:
            # The group moved on; the new owner re-reads from the last committed offset and the
            # ledger's idempotency keys make those records no-ops.
            self._metrics.commits_failed.inc()
            log.warning("offset commit refused after rebalance", extra={"action": "commit_failed"})
