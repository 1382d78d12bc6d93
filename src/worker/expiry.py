"""The expiry sweeps: unpaid payments past `expires_at` move to `expired` (CONTRACT section 5),
and what is left of coin lots past their deadline expires (section 10).

Every worker runs both. A sweep locks what is due with SKIP LOCKED, so two workers never expire
the same thing, and what a batch is working on is left for the next sweep; the change is
written with its results in the outbox in one transaction, like a batch's.

A coin lot is expired by the consume lane that owns the input partition its credit came from
(the one that decides all of its student's coin results), between two of its batches
(`ConsumeLoop.between_batches`): its `coins.expired` then takes its place in the student's order
of results (CONTRACT section 4). Payments are swept by whichever worker locks them first: their
results all go through the outbox, whose one publisher keeps their order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from worker.core.coins import CoinPlan
from worker.core.payments import PaymentPlan
from worker.db import coins, payments
from worker.errors import is_retriable
from worker.metrics import Metrics
from worker.pipeline import count_coin_entries, count_payment_plan
from worker.retry import transient_retry

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection

log = logging.getLogger(__name__)

Due = TypeVar("Due", bound=Collection[Any])  # what one sweep locked
Plan = TypeVar("Plan")
# The input partition numbers one step sweeps the items of; None: every item.
Partitions = Collection[int] | None
# Runs a step of a sweep once in each share of the work, with its partition numbers, and sums
# what the steps return: `ConsumeLoop.between_batches`.
Shares = Callable[[Callable[[frozenset[int]], Awaitable[int]]], Awaitable[int]]


@dataclass(frozen=True)
class Sweep(Generic[Due, Plan]):
    """What one kind of sweep does, for `Sweeper`."""

    # What it expires, for logs: "payment", "coin lot".
    what: str
    # Lock up to `limit` due items of the partitions that no other transaction holds, but for
    # those keyed in `skip`, as of `now`.
    lock: Callable[[Connection, datetime, int, Sequence[str], Partitions], Awaitable[Due]]
    # Expire the locked items of the partitions and queue their results, in the caller's
    # transaction.
    expire: Callable[[Connection, Due, datetime, Partitions], Awaitable[Plan]]
    # The key of each locked item: what is skipped when it cannot be expired.
    keys: Callable[[Due], list[str]]
    # Metrics and logs of a committed plan; how many things it expired.
    committed: Callable[[Metrics, Plan], int]
    # The counter of items it could not expire for good.
    failures: Callable[[Metrics], Any]


def _payments_committed(metrics: Metrics, plan: PaymentPlan) -> int:
    count_payment_plan(metrics, plan)
    if plan.transitions:
        payment_ids = [t.payment_id for t in plan.transitions]
        fields = {"action": "expire", "payment_ids": payment_ids[:20], "count": len(payment_ids)}
        log.info("expired payments", extra=fields)
    return len(plan.transitions)


def _lots_committed(metrics: Metrics, plan: CoinPlan) -> int:
    count_coin_entries(metrics, plan)
    if plan.entries:
        students = sorted({entry.student_id for entry in plan.entries})
        fields = {"action": "expire_coins", "student_ids": students[:20], "count": len(students)}
        log.info("expired coin lots", extra=fields)
    return len(plan.entries)


PAYMENTS: Sweep[Any, PaymentPlan] = Sweep(
    what="payment",
    lock=lambda conn, now, limit, skip, _: payments.lock_due(conn, now, limit, skip),
    expire=lambda conn, due, now, _: payments.expire(conn, due, now),
    keys=lambda due: [payment.payment_id for payment in due],
    committed=_payments_committed,
    failures=lambda metrics: metrics.expiry_failures,
)


def _shared(partitions: Partitions) -> Collection[int]:
    if partitions is None:  # a wiring mistake, not a fault of one lot: every sweep fails
        raise TypeError("coin lots are expired by partition: the Sweeper needs its shares")
    return partitions


COIN_LOTS: Sweep[Any, CoinPlan] = Sweep(
    what="coin lot",
    lock=lambda conn, now, limit, skip, partitions: coins.lock_due(
        conn, now, limit, skip, _shared(partitions)
    ),
    expire=lambda conn, due, now, partitions: coins.expire(conn, due, now, _shared(partitions)),
    keys=list,  # the locked wallets, by student id
    committed=_lots_committed,
    failures=lambda metrics: metrics.coin_expiry_failures,
)


class Sweeper(Generic[Due, Plan]):
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        sweep: Sweep[Due, Plan],
        *,
        interval_seconds: float,
        on_committed: Callable[[], None] = lambda: None,
        chunk: int = 500,
        shares: Shares | None = None,
    ) -> None:
        """`shares`: what each step runs in (the consume lanes, for coin lots); None: every
        step sweeps everything."""
        self._pool = pool
        self._metrics = metrics
        self._sweep = sweep
        self._interval = interval_seconds
        self._on_committed = on_committed
        self._chunk = chunk
        self._shares = shares
        # Keys of what this process could not expire (a fault that retrying cannot cure): left
        # alone until a restart, so that one item never stops the sweep of the others.
        self._skipped: set[str] = set()

    async def run(self) -> None:
        """Sweep every `interval_seconds` until cancelled; passing faults are retried."""
        what = self._sweep.what
        while True:
            try:
                async for attempt in transient_retry():
                    with attempt:
                        while await self._each_share(self.sweep_once):
                            pass
            except Exception as exc:  # noqa: BLE001 - one item must not stop the sweep
                log.warning(
                    "%s expiry sweep failed; expiring one at a time",
                    what,
                    extra={"action": "expire_isolate", "error": f"{type(exc).__name__}: {exc}"},
                )
                try:
                    async for attempt in transient_retry():
                        with attempt:
                            while await self._each_share(self._sweep_one):
                                pass
                except Exception:
                    log.exception("%s expiry sweep failed; trying again later", what, extra={
                        "action": "expire_failed"})  # fmt: skip
            await asyncio.sleep(self._interval)

    async def _each_share(self, step: Callable[[Partitions], Awaitable[int]]) -> int:
        if self._shares is None:
            return await step(None)
        return await self._shares(step)

    async def sweep_once(self, partitions: Partitions = None) -> int:
        """Expire what is due of up to one chunk of locked items of `partitions` (None: any);
        returns how many things were expired (0: nothing due is left that another transaction
        does not hold)."""
        async with self._pool.acquire() as conn, conn.transaction():
            now = datetime.now(UTC)
            skip = list(self._skipped)
            due = await self._sweep.lock(conn, now, self._chunk, skip, partitions)
            plan = await self._sweep.expire(conn, due, now, partitions)
        return self._committed(plan)

    async def _sweep_one(self, partitions: Partitions = None) -> int:
        """Expire the first due item of `partitions`, or set it aside if that fails for good.
        Returns 0 when none is left, else 1."""
        async with self._pool.acquire() as conn, conn.transaction():
            now = datetime.now(UTC)
            due = await self._sweep.lock(conn, now, 1, list(self._skipped), partitions)
            if not due:
                return 0
            try:
                async with conn.transaction():  # a savepoint: a failure leaves the lock held
                    plan = await self._sweep.expire(conn, due, now, partitions)
            except Exception as exc:
                if is_retriable(exc):
                    raise
                keys = self._sweep.keys(due)
                self._skipped.update(keys)
                self._sweep.failures(self._metrics).inc()
                log.exception(
                    "%s cannot be expired; left alone until a restart",
                    self._sweep.what,
                    extra={"action": "expire_failed", "keys": keys},
                )
                return 1
        self._committed(plan)
        return 1

    def _committed(self, plan: Plan) -> int:
        expired = self._sweep.committed(self._metrics, plan)
        if expired:
            self._on_committed()
        return expired
