"""What `/readyz` checks: the database answers, and the consumer is in its group."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from worker.db.queries import sql
from worker.metrics import Metrics


@dataclass(frozen=True)
class Readiness:
    pool: asyncpg.Pool = field(repr=False)
    # Whether the consumer holds its partitions and knows its group coordinator.
    in_group: Callable[[], bool]
    metrics: Metrics = field(repr=False)

    async def __call__(self) -> dict[str, bool]:
        checks = {"database": await self._database(), "kafka_group": self.in_group()}
        self.metrics.ready.set(1 if all(checks.values()) else 0)
        return checks

    async def _database(self) -> bool:
        try:
            # The pool is shared with the batches, the relay and the sweeps: a busy worker may
            # take a moment to lend a connection, which is not an outage.
            async with asyncio.timeout(3.0):
                async with self.pool.acquire() as conn:
                    await conn.fetchval(sql("ping"))
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready"
            return False
        return True
