"""The voucher catalog against the real PostgreSQL: upserts, stock under racing workers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.integration.test_coin_ledger_sql import assert_invariants
from tests.unit.test_catalog import ITEM, redeem, upsert
from tests.unit.test_coin_lots import credit
from worker.core.catalog import UpsertItem
from worker.core.coins import CoinCommand
from worker.db import reads
from worker.db.catalog import apply_catalog_commands
from worker.db.coins import apply_coin_commands

NOW = datetime.now(UTC)


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=12)
    yield pool
    await pool.close()


async def upserted(pool: asyncpg.Pool, commands: list[UpsertItem]) -> list[str]:
    """Apply upserts in one transaction; the result event types, in order."""
    async with pool.acquire() as conn, conn.transaction():
        plan = await apply_catalog_commands(conn, commands, NOW)
    return [m.topic for m in plan.messages]


async def applied(pool: asyncpg.Pool, commands: list[CoinCommand]) -> list[dict]:  # type: ignore[type-arg]
    """Apply coin commands in one transaction; the results' data, in order."""
    async with pool.acquire() as conn, conn.transaction():
        plan = await apply_coin_commands(conn, commands, datetime.now(UTC))
    return [json.loads(m.value or b"")["data"] for m in plan.messages]


async def test_upserts_create_replace_and_refuse_stale_versions(pool: asyncpg.Pool) -> None:
    assert await upserted(pool, [upsert()]) == ["catalog.item.updated"]
    v2 = replace(ITEM, version=2, title="15% off", stock=None, per_student_limit=3)
    stale = replace(ITEM, title="other")  # version 1 again, with other fields
    assert await upserted(pool, [upsert(v2, "e2"), upsert(stale, "e3")]) == [
        "catalog.item.updated",
        "catalog.item.rejected",
    ]
    row = await pool.fetchrow("SELECT * FROM catalog_items")
    assert (row["version"], row["title"], row["stock"], row["per_student_limit"]) == (
        2, "15% off", None, 3,
    )  # fmt: skip
    # A replay of version 1 repeats its first answer; the refused event repeats its refusal.
    async with pool.acquire() as conn, conn.transaction():
        first = await apply_catalog_commands(conn, [upsert(event="e-replay")], NOW)
        again = await apply_catalog_commands(conn, [upsert(stale, "e3")], NOW)
    assert [o for _, o in first.outcomes] == ["duplicate"]
    assert first.messages[0].topic == "catalog.item.updated"
    assert [o for _, o in again.outcomes] == ["duplicate"]
    assert again.messages[0].topic == "catalog.item.rejected"
    assert await pool.fetchval("SELECT version FROM catalog_items") == 2


async def test_the_catalog_read_offers_what_is_on_offer_now(pool: asyncpg.Pool) -> None:
    later = replace(ITEM, item_id="later", active_from=NOW + timedelta(days=1))
    over = replace(ITEM, item_id="over", active_from=NOW - timedelta(days=9),
                   active_until=NOW - timedelta(days=1))  # fmt: skip
    await upserted(pool, [upsert(), upsert(later, "e2"), upsert(over, "e3")])
    async with pool.acquire() as conn:
        rows = await reads.catalog(conn, datetime.now(UTC), 100)
    assert [r["item_id"] for r in rows] == ["v-10"]


async def test_racing_workers_never_take_stock_below_zero(pool: asyncpg.Pool) -> None:
    stock, students, workers = 7, 30, 6
    await upserted(pool, [upsert(replace(ITEM, stock=stock, active_from=NOW - timedelta(1)))])
    await applied(pool, [credit(f"s{i}", "seed", 1000) for i in range(students)])

    async def one_worker(w: int) -> None:  # each batch its own students, all the same item
        mine = [f"s{i}" for i in range(students) if i % workers == w]
        for student in mine:
            await applied(pool, [redeem(f"r-{student}", student=student)])

    await asyncio.gather(*(one_worker(w) for w in range(workers)))
    assert await pool.fetchval("SELECT stock FROM catalog_items") == 0
    taken = await pool.fetchval("SELECT count(*) FROM coin_transactions WHERE type = 'redemption'")
    assert taken == stock
    refused = await pool.fetch("SELECT outcome, count(*) FROM coin_requests WHERE type ="
                               " 'redemption' GROUP BY 1")  # fmt: skip
    assert dict(refused) == {"applied": stock, "rejected": students - stock}
    assert await pool.fetchval("SELECT sum(redeemed) FROM catalog_redemptions") == stock
    async with pool.acquire() as conn:
        await assert_invariants(conn)


async def test_one_student_racing_two_workers_stays_within_the_limit(pool: asyncpg.Pool) -> None:
    item = replace(ITEM, stock=None, per_student_limit=2, active_from=NOW - timedelta(1))
    await upserted(pool, [upsert(item)])
    await applied(pool, [credit("s", "seed", 10_000)])
    results = await asyncio.gather(*(applied(pool, [redeem(f"r{n}")]) for n in range(6)))
    reasons = sorted(str(data.get("reason")) for [data] in results)
    assert reasons == ["None", "None", *["limit_reached"] * 4]
    assert await pool.fetchval("SELECT redeemed FROM catalog_redemptions") == 2
    assert await pool.fetchval("SELECT balance FROM coin_wallets") == 10_000 - 2 * 100


async def test_an_upsert_and_redemptions_racing_on_one_item_serialise(pool: asyncpg.Pool) -> None:
    await upserted(pool, [upsert(replace(ITEM, stock=3, active_from=NOW - timedelta(1)))])
    await applied(pool, [credit(f"s{i}", "seed", 1000) for i in range(10)])
    # Every change of the item's row, in the order the row's lock granted them.
    await pool.execute(
        "CREATE TABLE item_log (n serial, version bigint, before bigint, after bigint);"
        "CREATE FUNCTION log_item() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " INSERT INTO item_log (version, before, after) VALUES (NEW.version, OLD.stock,"
        " NEW.stock); RETURN NEW; END $$;"
        "CREATE TRIGGER log_item AFTER UPDATE ON catalog_items FOR EACH ROW EXECUTE FUNCTION"
        " log_item()"
    )
    restock = replace(ITEM, version=2, stock=5, active_from=NOW - timedelta(1))
    await asyncio.gather(
        *(applied(pool, [redeem(f"r{i}", student=f"s{i}")]) for i in range(10)),
        upserted(pool, [upsert(restock, "e2")]),
    )
    changes = await pool.fetch("SELECT version, before, after FROM item_log ORDER BY n")
    # Each redemption took one from the stock the one before it left; the upsert set 5.
    stock, version = 3, 1
    for change in changes:
        assert change["before"] == stock, changes
        if change["version"] != version:
            version, stock = change["version"], 5
        else:
            stock -= 1
        assert change["after"] == stock >= 0, changes
    assert version == 2
    taken = await pool.fetchval("SELECT count(*) FROM coin_transactions WHERE type = 'redemption'")
    assert taken == sum(1 for c in changes if c["after"] < c["before"])
    assert await pool.fetchval("SELECT stock FROM catalog_items") == stock
    async with pool.acquire() as conn:
        await assert_invariants(conn)
