"""Publishing a committed batch's results straight from memory, before its offsets commit.

The consumed records are the durable record of these results: their decisions are stored, so a
crash before the broker acknowledged them re-reads the records and publishes the same results
again, byte for byte (CONTRACT section 3). No outbox row is written, read back or deleted.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from worker.core.messages import OutgoingMessage
from worker.messaging.outbox import count_parked
from worker.messaging.sender import Sender
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class Parking(Protocol):
    """Where a message the broker refuses for good is kept: `worker.db.outbox.Outbox`."""

    async def park(self, refused: Sequence[tuple[OutgoingMessage, Exception]]) -> None: ...


class ResultPublisher:
    """Sends messages in order and returns once the broker has taken each (or it is parked).

    A passing fault is retried by sending them all again (a repeat has the same id); one the
    broker refuses even alone is parked, so the offsets behind it can still be committed.
    Calls (one per consume lane) take turns: a send that replaces the producer must not pull it
    from under another.
    """

    def __init__(self, sender: Sender, parking: Parking, metrics: Metrics) -> None:
        self._sender = sender
        self._parking = parking
        self._metrics = metrics
        self._turn = asyncio.Lock()

    async def publish(self, messages: Sequence[OutgoingMessage]) -> None:
        if not messages:
            return
        async with self._turn:
            await self._publish(messages)

    async def _publish(self, messages: Sequence[OutgoingMessage]) -> None:
        async for attempt in transient_retry():
            with attempt:
                refused = await self._sender.send(messages)
        if refused:
            parked = [(messages[position], error) for position, error in sorted(refused.items())]
            async for attempt in transient_retry():
                with attempt:
                    await self._parking.park(parked)
            for message, error in parked:
                count_parked(self._metrics, message.topic, error)
        published = Counter(
            m.topic for position, m in enumerate(messages) if position not in refused
        )
        for topic, count in published.items():
            self._metrics.published.labels(topic=topic).inc(count)
