"""The transactional outbox: queue messages with their effect, publish them after commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors

from worker.core.messages import OutgoingMessage, headers_from_json
from worker.db.queries import sql
from worker.messaging.clients import start_with_retry
from worker.metrics import Metrics
from worker.retry import transient_retry

# Errors after which an idempotent producer cannot be used again.
FATAL_PRODUCER_ERRORS = (
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.UnknownProducerId,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.ProducerFenced,
)

if TYPE_CHECKING:
    from worker.db import Connection

log = logging.getLogger(__name__)


async def enqueue(conn: Connection, messages: Sequence[OutgoingMessage]) -> None:
    """Queue `messages` inside the caller's transaction: they exist only if it commits."""
    if not messages:
        return
    await conn.execute(
        sql("outbox_enqueue"),
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.value for m in messages],
        [m.headers_json() for m in messages],
    )


class OutboxRelay:
    """Publishes queued messages with the idempotent producer, oldest first, then forgets them.

    The outbox keeps topics as event types; the relay adds the deployment's topic prefix.

    Runs as one task per worker; `wake()` after a commit publishes at once, and a periodic pass
    picks up what a crashed worker left behind. Publishing is at least once: a crash between the
    broker's acknowledgement and the delete publishes a message again, with the same id.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        new_producer: Callable[[], AIOKafkaProducer],
        metrics: Metrics,
        *,
        topic_prefix: str = "",
        chunk: int = 1000,
        idle_seconds: float = 1.0,
    ) -> None:
        self._pool = pool
        self._new_producer = new_producer
        self._producer: AIOKafkaProducer | None = None
        self._metrics = metrics
        self._topic_prefix = topic_prefix
        self._chunk = chunk
        self._idle_seconds = idle_seconds
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
        """Publish until cancelled; when idle, refresh the backlog gauge once a second."""
        while True:
            self._wakeup.clear()
            try:
                async for attempt in transient_retry():
                    with attempt:
                        while await self.publish_once() == self._chunk:
                            pass
            except FATAL_PRODUCER_ERRORS as exc:
                # An idempotent producer whose sequence broke (a broker restart during retries)
                # cannot send again. The chunk rolled back, so nothing is lost: start a new
                # producer (a new producer id) and publish the chunk again, with the same ids.
                log.warning(
                    "replacing the producer",
                    extra={"action": "producer_reset", "error": f"{type(exc).__name__}: {exc}"},
                )
                await self.close()
                await self.start()
                continue
            try:
                await asyncio.wait_for(self._wakeup.wait(), self._idle_seconds)
            except TimeoutError:
                async for attempt in transient_retry():
                    with attempt:
                        await self.backlog()

    async def publish_once(self) -> int:
        """Publish one chunk of the queue; returns how many messages went out."""
        producer = self._producer
        if producer is None:
            raise RuntimeError("the relay's producer is not started")
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(sql("outbox_claim"), self._chunk)
            if not rows:
                return 0
            deliveries = [
                await producer.send(
                    self._topic_prefix + row["topic"],
                    value=row["value"],
                    key=row["key"],
                    headers=list(headers_from_json(row["headers"])),
                )
                for row in rows
            ]
            await asyncio.gather(*deliveries)
            await conn.execute(sql("outbox_delete"), [row["seq"] for row in rows])
        for row in rows:
            self._metrics.published.labels(topic=row["topic"]).inc()
        return len(rows)

    async def backlog(self) -> int:
        async with self._pool.acquire() as conn:
            count: int = await conn.fetchval(sql("outbox_backlog"))
        self._metrics.outbox_backlog.set(count)
        return count
