"""The outbox relay: publishes what the outbox table (`worker.db.outbox`) holds, after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer

from worker.db.outbox import QueuedMessage
from worker.errors import is_retriable
from worker.messaging.clients import start_with_retry
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

    async def backlog(self) -> tuple[int, int]: ...


class OutboxRelay:
    """Publishes queued messages with the idempotent producer, oldest first, then forgets them.

    The outbox keeps topics as event types; the relay adds the deployment's topic prefix.

    Runs as one task per worker, but only one relay publishes at a time (a transaction-scoped
    advisory lock), chunk after chunk in queue order: so one student's results reach their
    partition in the order they were decided, also when several workers drain a backlog.
    `wake()` after a commit publishes at once, and a periodic pass picks up what a crashed
    worker left behind. Publishing is at least once: a crash between the broker's
    acknowledgement and the delete publishes a message again, with the same id.

    A message the broker or the producer refuses for a reason retrying cannot cure is parked
    (moved to `parked_messages`, counted and logged), so it never blocks the ones behind it. The
    broker refuses a whole producer batch, and the idempotent producer's sequence breaks with
    it (the batches after it fail too): so every message of the chunk that was not taken is
    sent again on its own, in order, with a new producer, and only one refused alone is parked.
    """

    def __init__(
        self,
        outbox: OutboxStore,
        new_producer: Callable[[], AIOKafkaProducer],
        metrics: Metrics,
        *,
        topic_prefix: str = "",
        chunk: int = 1000,
        idle_seconds: float = 1.0,
        busy_seconds: float = 0.05,
    ) -> None:
        self._outbox = outbox
        self._new_producer = new_producer
        self._producer: AIOKafkaProducer | None = None
        self._metrics = metrics
        self._topic_prefix = topic_prefix
        self._chunk = chunk
        self._idle_seconds = idle_seconds
        self._busy_seconds = busy_seconds
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def start(self) -> None:
        """Start the idempotent producer, waiting for the broker."""
        self._producer = self._new_producer()
        await start_with_retry(self._producer, "producer")

    async def close(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._producer.stop()

    async def run(self) -> None:
        """Publish until cancelled; when idle, refresh the backlog gauges once a second."""
        while True:
            self._wakeup.clear()
            async for attempt in transient_retry():
                with attempt:
                    await self.drain()
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that lands as the wait ends, and the relay would never stop.
                async with asyncio.timeout(self._idle_seconds):
                    await self._wakeup.wait()
            except TimeoutError:
                async for attempt in transient_retry():
                    with attempt:
                        await self.backlog()

    async def drain(self) -> None:
        """Publish until the queue is empty; while another relay publishes, wait for it (its
        last pass may have missed what this worker queued just now)."""
        while True:
            sent = await self.publish_once()
            if sent is None:
                await asyncio.sleep(self._busy_seconds)
            elif sent == 0:
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
            refused = await self._send(rows)
            parked = await self._send_alone([r for r in rows if r.seq in refused])
            published = [row for row in rows if row.seq not in parked]
            await chunk.forget([row.seq for row in published])
            if parked:
                await chunk.park(parked)
        for row in published:
            self._metrics.published.labels(topic=row.topic).inc()
        for row in rows:
            if row.seq in parked:
                self._count_parked(row, parked[row.seq])
        return len(rows)

    async def _send(self, rows: Sequence[QueuedMessage]) -> dict[int, Exception]:
        """Send `rows` in order and wait for every acknowledgement. Returns the messages not
        taken, by outbox seq, with why; a passing fault is raised (the chunk rolls back and is
        sent again, whole and in order)."""
        producer = self._started()
        refused: dict[int, Exception] = {}
        deliveries: list[tuple[int, asyncio.Future[Any]]] = []
        for row in rows:
            try:
                delivery = await producer.send(**_message(self._topic_prefix, row))
            except Exception as exc:  # noqa: BLE001 - a permanent refusal is sent alone next
                _raise_if_passing(exc)
                refused[row.seq] = exc
            else:
                deliveries.append((row.seq, delivery))
        outcomes = await asyncio.gather(*(d for _, d in deliveries), return_exceptions=True)
        for (seq, _), outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _raise_if_passing(outcome)
                refused[seq] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return refused

    async def _send_alone(self, rows: Sequence[QueuedMessage]) -> dict[int, Exception]:
        """Send each of `rows` on its own, in order, with a new producer after any refusal (a
        refused batch breaks the idempotent producer's sequence). Returns those refused alone:
        to be parked. A passing fault is raised."""
        if not rows:
            return {}
        parked: dict[int, Exception] = {}
        await self._replace_producer()
        for row in rows:
            try:
                await (await self._started().send(**_message(self._topic_prefix, row)))
            except Exception as exc:  # noqa: BLE001 - refused alone: parked
                _raise_if_passing(exc)
                parked[row.seq] = exc
                await self._replace_producer()
        return parked

    async def _replace_producer(self) -> None:
        log.warning("replacing the producer", extra={"action": "producer_reset"})
        await self.close()
        await self.start()

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the relay's producer is not started")
        return self._producer

    def _count_parked(self, row: QueuedMessage, error: Exception) -> None:
        self._metrics.parked.inc()
        log.error(
            "message parked: it cannot be published",
            extra={
                "action": "park",
                "outbox_seq": row.seq,
                "topic": row.topic,
                "error": f"{type(error).__name__}: {error}",
            },
        )

    async def backlog(self) -> int:
        """Refresh the queued and parked gauges; returns how many messages are queued."""
        queued, parked = await self._outbox.backlog()
        self._metrics.outbox_backlog.set(queued)
        self._metrics.parked_messages.set(parked)
        return queued


def _message(prefix: str, row: QueuedMessage) -> dict[str, Any]:
    """`producer.send`'s arguments for a queued message."""
    return {
        "topic": prefix + row.topic,
        "value": row.value,
        "key": row.key,
        "headers": list(row.headers()),
    }


def _raise_if_passing(error: Exception) -> None:
    """A passing fault is the whole chunk's: it rolls back and is sent again later. (A producer
    whose sequence broke, aiokafka's OutOfOrderSequenceNumber, is not one: what it did not send
    goes out alone, with a new producer.)"""
    if is_retriable(error):
        raise error
