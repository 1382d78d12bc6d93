"""The voucher catalog in PostgreSQL: admins' upserts, and the items the read API offers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from worker.core import cloudevents
from worker.core.catalog import (
    CatalogItem,
    CatalogPlan,
    UpsertItem,
    VersionDecision,
    decide_catalog,
)
from worker.core.messages import OutgoingMessage
from worker.db.answers import known_answers, record_answers
from worker.db.queries import sql
from worker.errors import ConcurrentWriteError

if TYPE_CHECKING:
    from worker.db import Connection


async def apply_catalog_commands(
    conn: Connection, commands: Sequence[UpsertItem], now: datetime
) -> CatalogPlan:
    """Apply admins' upserts in order inside the caller's transaction: lock and read, decide,
    write. The items are locked before anything earlier is read, as wallets are."""
    if not commands:
        return CatalogPlan()
    pairs = sorted({(c.item.item_id, c.item.version) for c in commands})
    [row] = await conn.fetch(
        sql("catalog_read"),
        sorted({item_id for item_id, _ in pairs}),
        [item_id for item_id, _ in pairs],
        [version for _, version in pairs],
    )
    items = {fields[0]: CatalogItem(*fields) for fields in row["items"]}
    known = {
        (item_id, version): VersionDecision(digest, _updated(item_id, value))
        for item_id, version, digest, value in row["versions"]
    }
    answered = await known_answers(conn, [c.event for c in commands])
    plan = decide_catalog(commands, items, known, answered, now)
    await _write(conn, plan)
    await record_answers(conn, plan.answers)
    return plan


def _updated(item_id: str, value: bytes) -> OutgoingMessage:
    return OutgoingMessage(
        "catalog.item.updated", item_id.encode(), value, tuple(cloudevents.structured_headers())
    )


async def _write(conn: Connection, plan: CatalogPlan) -> None:
    if not plan.versions:
        return
    items = list(plan.items.values())
    versions = list(plan.versions.items())
    [(written, kept)] = await conn.fetch(
        sql("catalog_write"),
        [i.item_id for i in items],
        [i.version for i in items],
        [i.title for i in items],
        [i.cost_coins for i in items],
        [i.stock for i in items],
        [i.active_from for i in items],
        [i.active_until for i in items],
        [i.per_student_limit for i in items],
        [item_id for (item_id, _), _ in versions],
        [version for (_, version), _ in versions],
        [decision.digest for _, decision in versions],
        [decision.result.value for _, decision in versions],
    )
    if written != len(items) or kept != len(versions):
        raise ConcurrentWriteError("a catalog item was upserted by another worker meanwhile")
