"""The outbox relay: publishes what the outbox table (`worker.db.outbox`) holds, after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from worker.db.outbox import Backlog, QueuedMessage
from worker.messaging.sender import Sender
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class Chunk(Protocol):
    """The oldest queued messages, held by the relay's transaction until it ends."""

    @property
    def messages(self) -> Sequence[QueuedMessage]: ...

    async def forget(self, seqs: Sequence[int]) -> None: ...

    async def park(self, refused: Mapping[int, Exception]) -> None: ...


class OutboxStore(Protocol):
    """What the relay reads and writes: `worker.db.outbox.Outbox`, or a test's fake."""

    def claim(self, limit: int) -> AbstractAsyncContextManager[Chunk | None]: ...

    async def backlog(self) -> Backlog: ...


class OutboxRelay:
    """Publishes queued messages with the idempotent producer, oldest first, then forgets them.

    The outbox holds the results that have no consumed input to be replayed from (the expiry
    sweep's, the provider calls'), the payment results (see `worker.pipeline`), and the
    messages an operator re-drives; it keeps topics as event types.

    Runs as one task per worker, but only one relay publishes at a time (a transaction-scoped
    advisory lock), chunk after chunk in queue order: so one student's results reach their
    partition in the order they were decided, also when several workers drain a backlog.
    `wake()` after a commit publishes at once, and a periodic pass picks up what a crashed
    worker left behind. Publishing is at least once: a crash between the broker's
    acknowledgement and the delete publishes a message again, with the same id.

    A message the broker or the producer refuses for a reason retrying cannot cure, even sent
    alone (`Sender`), is parked (moved to `parked_messages`, counted and logged), so it never
    blocks the ones behind it.
    """

    def __init__(
        self,
        outbox: OutboxStore,
        sender: Sender,
        metrics: Metrics,
        *,
        chunk: int = 1000,
        idle_seconds: float = 1.0,
        busy_seconds: float = 0.05,
    ) -> None:
        self._outbox = outbox
        self._sender = sender
        self._metrics = metrics
        self._chunk = chunk
        self._idle_seconds = idle_seconds
        self._busy_seconds = busy_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """Publish until cancelled; when idle, look again once a second."""
        while True:
            self._wakeup.clear()
            async for attempt in transient_retry():
                with attempt:
                    await self.drain()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that
            # lands as the wait ends, and the relay would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._idle_seconds):
                    await self._wakeup.wait()

    async def report_backlog(self, every_seconds: float = 1.0) -> None:
        """Refresh the backlog gauges every `every_seconds` until cancelled, on a loop of their
        own: they must move most while publishing is stuck (a broker away, a refusal retried).
        A failed refresh is logged and tried again at the next tick."""
        while True:
            try:
                await self.backlog()
            except Exception as exc:  # noqa: BLE001 - a metric must never stop the worker
                log.warning("outbox backlog not refreshed", extra={
                    "action": "backlog", "error": f"{type(exc).__name__}: {exc}"})  # fmt: skip
            await asyncio.sleep(every_seconds)

    async def drain(self) -> None:
        """Publish until the queue is empty; while another relay publishes, wait for it (its
        last pass may have missed what this worker queued just now).

        A chunk shorter than the limit took every message committed before it was claimed, so
        no empty pass follows it (a transaction of round trips for nothing, after every batch):
        what commits later wakes this relay again (`wake`), or, queued by another worker, that
        worker's relay, which waits its turn."""
        while True:
            sent = await self.publish_once()
            if sent is None:
                await asyncio.sleep(self._busy_seconds)
            elif sent < self._chunk:
                return

    async def publish_once(self) -> int | None:
        """Publish one chunk of the queue, oldest first. Returns how many messages left the
        queue (published or parked), or None when another relay is the publisher now."""
        async with self._outbox.claim(self._chunk) as chunk:
            if chunk is None:
                return None
            rows = chunk.messages
            if not rows:
                return 0
            refused = await self._sender.send([row.message() for row in rows])
            parked = {rows[position].seq: error for position, error in refused.items()}
            published = [row for row in rows if row.seq not in parked]
            await chunk.forget([row.seq for row in published])
            if parked:
                await chunk.park(parked)
        for topic, count in Counter(row.topic for row in published).items():
            self._metrics.published.labels(topic=topic).inc(count)
        for row in rows:
            if row.seq in parked:
                count_parked(self._metrics, row.topic, parked[row.seq], outbox_seq=row.seq)
        return len(rows)

    async def backlog(self) -> int:
        """Refresh the queued, parked and oldest-unpublished gauges; returns how many messages
        are queued."""
        found = await self._outbox.backlog()
        self._metrics.outbox_backlog.set(found.queued)
        self._metrics.parked_messages.set(found.parked)
        self._metrics.oldest_unpublished.set(found.oldest_seconds)
        return found.queued


def count_parked(metrics: Metrics, topic: str, error: Exception, **where: object) -> None:
    """Count and log a message parked because it cannot be published."""
    metrics.parked.inc()
    log.error(
        "message parked: it cannot be published",
        extra={
            "action": "park",
            "topic": topic,
            "error": f"{type(error).__name__}: {error}",
            **where,
        },
    )
