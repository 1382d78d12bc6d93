"""Applies a batch of consumed records in one database transaction, exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from worker.core.coins import COIN_HANDLERS, COIN_TYPES, Rewards, command_for
from worker.core.envelope import BadInputError
from worker.core.ledger import CoinCommand, Plan
from worker.core.messages import OutgoingMessage
from worker.core.records import InboundRecord, dead_letter
from worker.core.topics import event_type
from worker.db.coins import apply_coin_commands
from worker.messaging import outbox
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)

# The event types this worker handles; it subscribes to exactly these topics, so events of a
# type whose handler has not landed yet wait in Kafka instead of being dead-lettered.
HANDLED_TYPES: tuple[str, ...] = tuple(COIN_HANDLERS)


class Pipeline:
    """Turns a batch into effects and outgoing messages inside one transaction.

    The whole batch is retried on a transient fault; effects are keyed by business reference,
    so a retry after an ambiguous commit changes nothing.
    """

    def __init__(
        self, pool: asyncpg.Pool, metrics: Metrics, rewards: Rewards, topic_prefix: str
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._rewards = rewards
        self._topic_prefix = topic_prefix

    async def process(self, records: Sequence[InboundRecord]) -> None:
        commands, rejects = self._validate(records, datetime.now(UTC))
        async for attempt in transient_retry():
            with attempt:
                async with self._pool.acquire() as conn, conn.transaction():
                    plan = await apply_coin_commands(conn, commands, datetime.now(UTC))
                    await outbox.enqueue(conn, [*plan.messages, *rejects])
        self._count(plan, len(rejects))

    def _validate(
        self, records: Sequence[InboundRecord], now: datetime
    ) -> tuple[list[CoinCommand], list[OutgoingMessage]]:
        """Bytes to commands at the edge; what fails goes to the dead-letter topic whole."""
        commands = []
        rejects = []
        for record in records:
            kind = event_type(self._topic_prefix, record.topic)
            try:
                commands.append(command_for(kind, record.value, record.headers, self._rewards))
            except BadInputError as exc:
                rejects.append(dead_letter(record, exc, now))
                log.warning(
                    "dead-lettered",
                    extra={"action": "dead_letter", "error": str(exc), **record.coordinates},
                )
        return commands, rejects

    def _count(self, plan: Plan, dead_lettered: int) -> None:
        """Metrics after the commit, so a retried batch is counted once."""
        outcomes = Counter((COIN_TYPES[c.ledger_type], o) for c, o in plan.outcomes)
        for (kind, outcome), count in outcomes.items():
            self._metrics.messages.labels(event_type=kind, outcome=outcome).inc(count)
        for entry in plan.entries:
            direction = "credited" if entry.amount > 0 else "debited"
            self._metrics.coins.labels(direction=direction).inc(abs(entry.amount))
        if dead_lettered:
            self._metrics.dead_lettered.inc(dead_lettered)
