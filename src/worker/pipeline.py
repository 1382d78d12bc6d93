"""Applies a batch of consumed records in one database transaction, exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import asyncpg

from worker.core.messages import OutgoingMessage
from worker.core.records import InboundRecord, dead_letter
from worker.messaging import outbox
from worker.metrics import Metrics
from worker.retry import transient_retry

if TYPE_CHECKING:
    from worker.db import Connection

log = logging.getLogger(__name__)


class UnsupportedEventError(Exception):
    """The record's topic has no handler in this worker."""


class Pipeline:
    """Turns a batch into effects and outgoing messages inside one transaction.

    The whole batch is retried on a transient fault; since effects are keyed by business
    reference, a retry after an ambiguous commit changes nothing.
    """

    def __init__(self, pool: asyncpg.Pool, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics

    async def process(self, records: Sequence[InboundRecord]) -> None:
        async for attempt in transient_retry():
            with attempt:
                async with self._pool.acquire() as conn, conn.transaction():
                    outcomes = await self._apply(conn, records)
        for (topic, outcome), count in outcomes.items():
            self._metrics.messages.labels(topic=topic, outcome=outcome).inc(count)

    async def _apply(
        self, conn: Connection, records: Sequence[InboundRecord]
    ) -> Counter[tuple[str, str]]:
        now = datetime.now(UTC)
        outgoing: list[OutgoingMessage] = []
        outcomes: Counter[tuple[str, str]] = Counter()
        for record in records:
            error = UnsupportedEventError(f"no handler for topic {record.topic!r}")
            outgoing.append(dead_letter(record, error, now))
            outcomes[record.topic, "dead_lettered"] += 1
            log.warning(
                "dead-lettered",
                extra={"action": "dead_letter", "error": str(error), **record.coordinates},
            )
        await outbox.enqueue(conn, outgoing)
        return outcomes
