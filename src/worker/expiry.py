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

from worker.db.payments import expire_due
from worker.messaging import outbox
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

    async def run(self) -> None:
        """Sweep every `interval_seconds` until cancelled; transient faults are retried."""
        while True:
            async for attempt in transient_retry():
                with attempt:
                    while await self.sweep_once() == self._chunk:
                        pass
            await asyncio.sleep(self._interval)

    async def sweep_once(self) -> int:
        """Expire one chunk of overdue payments; returns how many were expired."""
        async with self._pool.acquire() as conn, conn.transaction():
            plan = await expire_due(conn, datetime.now(UTC), self._chunk)
            await outbox.enqueue(conn, plan.messages)
        if plan.transitions:
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
        return len(plan.transitions)
