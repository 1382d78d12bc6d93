"""The expiry sweep: moves unpaid payments past `expires_at` to `expired` (CONTRACT section 5).

Every worker runs one. A sweep locks due payments with SKIP LOCKED, so two workers never expire
the same payment, and a payment a batch is working on is left for the next sweep; the move is
written with its result in the outbox in one transaction, like a batch's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from worker.core.payments import PaymentPlan
from worker.db.payments import expire, expire_due, lock_due
from worker.errors import is_retriable
from worker.metrics import Metrics
from worker.pipeline import count_payment_plan
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class ExpirySweeper:
    def __init__(
        self,
        pool: asyncpg.Pool,
        metrics: Metrics,
        *,
        interval_seconds: float,
        on_committed: Callable[[], None] = lambda: None,
        chunk: int = 500,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._interval = interval_seconds
        self._on_committed = on_committed
        self._chunk = chunk
        # Payments this process could not expire (a fault that retrying cannot cure): left
        # alone until a restart, so that one payment never stops the sweep of the others.
        self._skipped: set[str] = set()

    async def run(self) -> None:
        """Sweep every `interval_seconds` until cancelled; passing faults are retried."""
        while True:
            try:
                async for attempt in transient_retry():
                    with attempt:
                        while await self.sweep_once() == self._chunk:
                            pass
            except Exception as exc:  # noqa: BLE001 - one payment must not stop the sweep
                log.warning(
                    "expiry sweep failed; expiring one payment at a time",
                    extra={"action": "expire_isolate", "error": f"{type(exc).__name__}: {exc}"},
                )
                try:
                    async for attempt in transient_retry():
                        with attempt:
                            while await self._sweep_one():
                                pass
                except Exception:
                    log.exception("expiry sweep failed; trying again later", extra={
                        "action": "expire_failed"})  # fmt: skip
            await asyncio.sleep(self._interval)

    async def sweep_once(self) -> int:
        """Expire one chunk of overdue payments; returns how many were expired."""
        async with self._pool.acquire() as conn, conn.transaction():
            plan = await expire_due(conn, datetime.now(UTC), self._chunk, list(self._skipped))
        self._committed(plan)
        return len(plan.transitions)

    async def _sweep_one(self) -> bool:
        """Expire the oldest overdue payment, or set it aside if that fails for good. Returns
        False when none is left."""
        async with self._pool.acquire() as conn, conn.transaction():
            now = datetime.now(UTC)
            due = await lock_due(conn, now, 1, list(self._skipped))
            if not due:
                return False
            try:
                async with conn.transaction():  # a savepoint: a failure leaves the lock held
                    plan = await expire(conn, due, now)
            except Exception as exc:
                if is_retriable(exc):
                    raise
                self._skipped.add(due[0].payment_id)
                self._metrics.expiry_failures.inc()
                log.exception(
                    "payment cannot be expired; left alone until a restart",
                    extra={"action": "expire_failed", "payment_id": due[0].payment_id},
                )
                return True
        self._committed(plan)
        return True

    def _committed(self, plan: PaymentPlan) -> None:
        if not plan.transitions:
            return
        count_payment_plan(self._metrics, plan)
        log.info(
            "expired payments",
            extra={
                "action": "expire",
                "payment_ids": [t.payment_id for t in plan.transitions][:20],
                "count": len(plan.transitions),
            },
        )
        self._on_committed()
