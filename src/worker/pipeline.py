"""Applies a batch of consumed records in one database transaction, exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import asyncpg

from worker.core.catalog import CatalogPlan, UpsertItem
from worker.core.coins import CoinCommand, CoinPlan
from worker.core.commands import command_for
from worker.core.envelope import BadInputError
from worker.core.handlers import Command, Policies
from worker.core.messages import OutgoingMessage
from worker.core.payments import PaymentDefaults, PaymentPlan, RefundPayment
from worker.core.records import InboundRecord, dead_letter, unreadable_record
from worker.core.topics import event_type
from worker.core.values import value_type
from worker.db import audit, outbox
from worker.db.catalog import apply_catalog_commands
from worker.db.coins import apply_coin_commands
from worker.db.payments import apply_payment_commands
from worker.metrics import Metrics
from worker.retry import transient_retry

log = logging.getLogger(__name__)


@value_type
class _Item:
    """A consumed record and the command it asks for."""

    record: InboundRecord
    command: Command


class Pipeline:
    """Turns a batch into effects and outgoing messages inside one transaction.

    Coin and payment commands touch disjoint tables, so each kind is applied as one group, in
    consumption order within it. The whole batch is retried on a passing fault; effects are
    keyed by business reference, so a retry after an ambiguous commit changes nothing.

    `process` returns the coin results and dead letters for the caller to publish before it
    commits the batch's offsets: their decisions are stored, so a replay of the batch repeats
    them byte for byte, and they need no outbox. Payment results are queued in the outbox in the
    same transaction: a payment's inputs arrive on partitions keyed by student (requests) and by
    provider payment id (webhooks), often owned by different workers, and only the outbox's one
    publisher keeps its results in the order they were decided.

    A batch is a speed device, never a blast radius: when it fails for a reason retrying cannot
    cure, the records that cause it are found by halving the batch (each half in its own
    transaction, in order) and dead-lettered one by one; every other record is applied.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        policies: Policies,
        defaults: PaymentDefaults,
        topic_prefix: str,
        on_durable: Callable[[], None] = lambda: None,
        on_gateway_calls: Callable[[], None] = lambda: None,
    ) -> None:
        self._on_durable = on_durable
        self._on_gateway_calls = on_gateway_calls
        self._pool = pool
        self._metrics = metrics
        self._policies = policies
        self._defaults = defaults
        self._topic_prefix = topic_prefix

    async def process(
        self, records: Sequence[InboundRecord], queue_all: bool = False
    ) -> list[OutgoingMessage]:
        """Apply `records`; returns the messages to publish before their offsets commit. With
        `queue_all`, every message is queued in the outbox instead, and none returned."""
        items, rejects = self._validate(records, datetime.now(UTC))
        try:
            return await self._apply(items, rejects, queue_all=queue_all)
        except Exception as exc:  # noqa: BLE001 - whatever it is, one record must not stop all
            log.warning(
                "batch failed; isolating the records that cause it",
                extra={"action": "isolate", "records": len(items), "error": _describe(exc)},
            )
            # Bad input alone first: dead letters are bytes, which nothing refuses.
            letters = await self._apply([], rejects, queue_all=queue_all) if rejects else []
            return [*letters, *await self._bisect(items, exc, queue_all)]

    async def dead_letter_unreadable(
        self, topic: str, partition: int, offset: int, error: BaseException
    ) -> None:
        """Dead-letter a record the Kafka client cannot parse, by its coordinates: queued in the
        outbox, as the caller commits past it at once."""
        letter = unreadable_record(topic, partition, offset, error, _now())
        await self._apply([], [letter], queue_all=True)
        self._count_poison(event_type(self._topic_prefix, topic))
        log.error(
            "unreadable record dead-lettered",
            extra={
                "action": "poison",
                "error": _describe(error),
                "topic": topic,
                "partition": partition,
                "offset": offset,
            },
        )

    async def _bisect(
        self, items: Sequence[_Item], error: Exception, queue_all: bool
    ) -> list[OutgoingMessage]:
        """`items` fail together with `error`: apply what passes, dead-letter what does not.
        Returns the messages to publish, in order."""
        if not items:
            return []
        if len(items) == 1:
            return await self._dead_letter(items[0], error, queue_all)
        middle = len(items) // 2
        messages = []
        for half in (items[:middle], items[middle:]):
            try:
                messages += await self._apply(half, [], queue_all=queue_all)
            except Exception as exc:  # noqa: BLE001 - narrowed down further, then dead-lettered
                messages += await self._bisect(half, exc, queue_all)
        return messages

    async def _dead_letter(
        self, item: _Item, error: Exception, queue_all: bool
    ) -> list[OutgoingMessage]:
        record = item.record
        letter = dead_letter(record, error, _now())
        letters = await self._apply([], [letter], queue_all=queue_all)
        fields = {"action": "dead_letter", "error": _describe(error), **record.coordinates}
        if isinstance(error, BadInputError):  # found by the rules, not by the decoder
            log.warning("dead-lettered", extra=fields)
        else:
            self._count_poison(event_type(self._topic_prefix, record.topic))
            log.error("poison message isolated and dead-lettered", exc_info=error, extra=fields)
        return letters

    async def _apply(
        self,
        items: Sequence[_Item],
        rejects: Sequence[OutgoingMessage],
        *,
        queue_all: bool = False,
    ) -> list[OutgoingMessage]:
        """Apply `items` in one transaction; returns the messages for the caller to publish
        (coin results, dead letters). Payment results are queued in the outbox, and every
        message is when `queue_all`."""
        coin_commands = [i.command for i in items if isinstance(i.command, CoinCommand)]
        # Kept on the lots, whose owner expires them (worker.expiry).
        partitions = {
            i.command.student_id: i.record.partition
            for i in items
            if isinstance(i.command, CoinCommand)
        }
        upserts = [i.command for i in items if isinstance(i.command, UpsertItem)]
        payment_commands = [
            i.command for i in items if not isinstance(i.command, CoinCommand | UpsertItem)
        ]
        async for attempt in transient_retry():
            with attempt:
                async with self._pool.acquire() as conn, conn.transaction():
                    now = _now()
                    # Payments first: the catalog items the coins lock next are what the
                    # lanes' batches wait on each other for, held from there to the commit. A
                    # batch locks payments, then wallets, then catalog items, each set in one
                    # statement in a fixed order; nothing else locks two of these (gateway
                    # calls and the expiry sweeps lock payments, or wallets, alone).
                    payments = await apply_payment_commands(
                        conn, payment_commands, self._defaults, now
                    )
                    coins = await apply_coin_commands(
                        conn,
                        coin_commands,
                        now,
                        self._policies.coin_lifetime,
                        upserted={u.item.item_id for u in upserts},
                        partitions=partitions,
                    )
                    catalog = await apply_catalog_commands(conn, upserts, now)
                    await audit.record(conn, [*coins.audits, *catalog.audits, *payments.audits])
                    late = _late_bad_input(items, payments)
                    letters = [dead_letter(r, BadInputError(why), now) for r, why in late]
                    direct = [*coins.messages, *rejects, *letters]
                    # Results of the catalog and of payments go through the outbox (the
                    # payments' queued as their statement wrote them).
                    queued = [*catalog.messages, *direct] if queue_all else catalog.messages
                    await outbox.enqueue(conn, queued)
        if queued or payments.messages:  # in the outbox now: the relay need not wait for offsets
            self._on_durable()
        if payments.calls:  # new sessions and refunds to ask the providers for
            self._on_gateway_calls()
        self._count(coins, payments, len(rejects) + len(late), catalog)
        for record, why in late:
            log.warning(
                "dead-lettered",
                extra={"action": "dead_letter", "error": why, **record.coordinates},
            )
        return [] if queue_all else direct

    def _validate(
        self, records: Sequence[InboundRecord], now: datetime
    ) -> tuple[list[_Item], list[OutgoingMessage]]:
        """Bytes to commands at the edge; what fails goes to the dead-letter topic whole."""
        items = []
        rejects = []
        for record in records:
            kind = event_type(self._topic_prefix, record.topic)
            try:
                command = command_for(
                    kind, record.key, record.value, record.headers, self._policies,
                    record.appended_at,
                )  # fmt: skip
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
                self._count_poison(kind)
                log.exception(
                    "dead-lettered after an unexpected error",
                    extra={"action": "poison", "error": repr(exc), **record.coordinates},
                )
            else:
                items.append(_Item(record, command))
                _log_unauthorized(command, record)
        return items, rejects

    def _count_poison(self, kind: str) -> None:
        self._metrics.poison.labels(event_type=kind).inc()

    def _count(
        self, coins: CoinPlan, payments: PaymentPlan, dead_lettered: int, catalog: CatalogPlan
    ) -> None:
        """Metrics and notable logs after the commit, so a retried batch is counted once."""
        outcomes: Counter[tuple[str, str]] = Counter(payments.outcomes)
        outcomes.update((c.event_type, o) for c, o in coins.outcomes)
        outcomes.update((c.event_type, o) for c, o in catalog.outcomes)
        for (kind, outcome), count in outcomes.items():
            self._metrics.messages.labels(event_type=kind, outcome=outcome).inc(count)
        count_coin_entries(self._metrics, coins)
        count_payment_plan(self._metrics, payments)
        if dead_lettered:
            self._metrics.dead_lettered.inc(dead_lettered)


def _late_bad_input(
    items: Sequence[_Item], payments: PaymentPlan
) -> list[tuple[InboundRecord, str]]:
    """The records of commands the rules found to be bad input once the database was read (a
    refund whose subject is not the payment's student), with why."""
    if not payments.bad_input:
        return []
    records = {id(item.command): item.record for item in items}
    return [(records[id(command)], why) for command, why in payments.bad_input]


def _log_unauthorized(command: Command, record: InboundRecord) -> None:
    """Why a privileged request will be answered `not_authorized`: the log says it, the answer
    does not (it would tell a forger what to fix)."""
    if isinstance(command, CoinCommand | RefundPayment | UpsertItem) and (
        command.unauthorized_because
    ):
        log.warning(
            "privileged request not authorized",
            extra={
                "action": "not_authorized",
                "error": command.unauthorized_because,
                **record.coordinates,
            },
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def count_coin_entries(metrics: Metrics, plan: CoinPlan) -> None:
    """Coins moved by a committed coin plan, by direction: credited, debited, expired."""
    moved: Counter[str] = Counter()
    for entry in plan.entries:
        direction = "expired" if entry.ledger_type == "expiry" else None
        moved[direction or ("credited" if entry.amount > 0 else "debited")] += abs(entry.amount)
    for direction, amount in moved.items():
        metrics.coins.labels(direction=direction).inc(amount)


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
