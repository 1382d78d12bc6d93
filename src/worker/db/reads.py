"""The read API's queries: one named statement each, on the sidecar's own read-only pool."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from worker.db.queries import sql

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection


async def wallet(conn: Connection, student_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(sql("read_wallet"), student_id)


async def catalog(conn: Connection, now: datetime, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(sql("read_catalog"), now, limit)


async def transactions(
    conn: Connection, student_id: str, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(sql("read_transactions"), student_id, before, limit)


async def student_payments(
    conn: Connection, student_id: str, status: str | None, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(sql("read_student_payments"), student_id, status, before, limit)


async def payment(conn: Connection, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(sql("read_payment"), payment_id)


async def audit(conn: Connection, before: int | None, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(sql("read_audit"), before, limit)
