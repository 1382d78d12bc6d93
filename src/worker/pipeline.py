"""Applies a batch of consumed records in one database transaction, exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from worker.core.coins import COIN_TYPES
from worker.core.commands import Command, Policies, command_for
from worker.core.envelope import BadInputError
from worker.core.gateway import Gateway
from worker.core.ledger import CoinCommand, Plan
from worker.core.lifecycle import PaymentPlan
from worker.core.messages import OutgoingMessage
from worker.core.records import InboundRecord, dead_letter
from worker.core.topics import event_type
from worker.db.coins import apply_coin_commands
from worker.db.payments import apply_payment_commands
from worker.messaging import outbox
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class Pipeline:
    """Turns a batch into effects and outgoing messages inside one transaction.

    Coin and payment commands touch disjoint tables, so each kind is applied as one group, in
    consumption order within it. The whole batch is retried on a transient fault; effects are
    keyed by business reference, so a retry after an ambiguous commit changes nothing.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        policies: Policies,
        gateway: Gateway,
        topic_prefix: str,
        on_durable: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_durable = on_durable
        self._pool = pool
        self._metrics = metrics
        self._policies = policies
        self._gateway = gateway
        self._topic_prefix = topic_prefix

    async def process(self, records: Sequence[InboundRecord]) -> None:
        commands, rejects = self._validate(records, datetime.now(UTC))
        coin_commands = [c for c in commands if isinstance(c, CoinCommand)]
        payment_commands = [c for c in commands if not isinstance(c, CoinCommand)]
        async for attempt in transient_retry():
            with attempt:
                async with self._pool.acquire() as conn, conn.transaction():
                    now = datetime.now(UTC)
                    coins = await apply_coin_commands(conn, coin_commands, now)
                    payments = await apply_payment_commands(
                        conn, payment_commands, self._gateway, now
                    )
                    await outbox.enqueue(conn, [*coins.messages, *payments.messages, *rejects])
        # The results are durable in the outbox now: publishing need not wait for the offsets.
        self._on_durable()
        self._count(coins, payments, len(rejects))

    def _validate(
        self, records: Sequence[InboundRecord], now: datetime
    ) -> tuple[list[Command], list[OutgoingMessage]]:
        """Bytes to commands at the edge; what fails goes to the dead-letter topic whole."""
        commands = []
        rejects = []
        for record in records:
            kind = event_type(self._topic_prefix, record.topic)
            try:
                commands.append(command_for(kind, record.value, record.headers, self._policies))
            except BadInputError as exc:
                rejects.append(dead_letter(record, exc, now))
                log.warning(
                    "dead-lettered",
                    extra={"action": "dead_letter", "error": str(exc), **record.coordinates},
                )
            except Exception as exc:
                # Decoding is pure, so this is deterministic: retrying or crashing would stick
                # the partition on this record for ever. Dead-letter it whole and say so loudly.
                rejects.append(dead_letter(record, exc, now))
                log.exception(
                    "dead-lettered after an unexpected error",
                    extra={"action": "dead_letter", "error": repr(exc), **record.coordinates},
                )
        return commands, rejects

    def _count(self, coins: Plan, payments: PaymentPlan, dead_lettered: int) -> None:
        """Metrics and notable logs after the commit, so a retried batch is counted once."""
        outcomes: Counter[tuple[str, str]] = Counter(payments.outcomes)
        outcomes.update((COIN_TYPES[c.ledger_type], o) for c, o in coins.outcomes)
        for (kind, outcome), count in outcomes.items():
            self._metrics.messages.labels(event_type=kind, outcome=outcome).inc(count)
        for entry in coins.entries:
            direction = "credited" if entry.amount > 0 else "debited"
            self._metrics.coins.labels(direction=direction).inc(abs(entry.amount))
        count_payment_plan(self._metrics, payments)
        if dead_lettered:
            self._metrics.dead_lettered.inc(dead_lettered)


def count_payment_plan(metrics: Metrics, plan: PaymentPlan) -> None:
    """Transitions, webhook refusals and late successes of a committed payment plan."""
    for transition in plan.transitions:
        metrics.payment_transitions.labels(
            from_status=transition.from_status or "new", to_status=transition.to_status
        ).inc()
    for provider, reason in plan.webhook_refusals:
        metrics.webhook_refusals.labels(provider=provider, reason=reason).inc()
    for late in plan.late_successes:
        metrics.late_successes.inc()
        log.warning(
            "verified success for a closed payment: the provider wins",
            extra={
                "action": "late_success",
                "payment_id": late.payment_id,
                "from_status": late.from_status,
                "source_event_id": late.source_event_id,
            },
        )
