"""Coin lots and the expiry sweep against the real PostgreSQL (CONTRACT section 10)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from tests.integration.test_coin_ledger_sql import assert_invariants
from tests.support import eventually
from tests.unit.test_coin_lots import credit, redeem
from worker.core.coins import CoinCommand
from worker.db import coins, reads
from worker.db.coins import apply_coin_commands
from worker.expiry import COIN_LOTS, Sweeper
from worker.metrics import Metrics

DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
START = datetime.now(UTC) - 10 * DAY  # credits made then with these lifetimes are due now


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


async def apply(
    pool: asyncpg.Pool,
    batch: list[CoinCommand],
    now: datetime,
    lifetime: timedelta | None,
    partitions: dict[str, int] | None = None,
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await apply_coin_commands(conn, batch, now, lifetime, partitions=partitions)


async def partition_zero(step: Callable[[frozenset[int]], Awaitable[int]]) -> int:
    """The shares of a sweep of the lots made with no partition (`apply` without one)."""
    return await step(frozenset({0}))


async def assert_lots_in_step(conn: asyncpg.Connection) -> None:
    """Balance = sum of entries >= 0 (assert_invariants), and the lotted part of each balance
    is what its open lots hold; no lot expired twice, and each expiry took what its lot had."""
    await assert_invariants(conn)
    off = await conn.fetch(
        "SELECT w.student_id FROM coin_wallets w LEFT JOIN coin_lots l"
        " ON l.student_id = w.student_id GROUP BY w.student_id, w.lotted, w.balance"
        " HAVING w.lotted <> coalesce(sum(l.remaining), 0) OR w.lotted > w.balance"
    )
    assert off == []
    twice = await conn.fetchval(
        "SELECT count(*) FROM (SELECT reference_id FROM coin_transactions WHERE type = 'expiry'"
        " GROUP BY reference_id HAVING count(*) > 1) AS t"
    )
    assert twice == 0
    # A lot's coins went to debits and at most one expiry: amount = spent + expired + left.
    over = await conn.fetchval(
        "SELECT count(*) FROM coin_lots l LEFT JOIN coin_transactions t"
        " ON t.type = 'expiry' AND t.reference_id = l.transaction_id::text"
        " WHERE -coalesce(t.amount, 0) + l.remaining > l.amount"
    )
    assert over == 0


async def test_a_debit_draws_on_the_lots_that_expire_first_and_the_wallet_shows_the_next(
    pool: asyncpg.Pool,
) -> None:
    now = datetime.now(UTC)
    await apply(pool, [credit("s", "old", 40)], now, None)  # never expires
    await apply(pool, [credit("s", "c1", 100)], now, 10 * DAY)
    await apply(pool, [credit("s", "c2", 30)], now, 2 * DAY)
    await apply(pool, [credit("s", "c3", 50)], now, 5 * DAY)
    async with pool.acquire() as conn:
        wallet = await reads.wallet(conn, "s")
        assert wallet is not None
        assert (wallet["expiring_amount"], wallet["expiring_at"]) == (30, now + 2 * DAY)
        # Lots that expire together (a credit and its streak bonus) show as one amount.
        await apply(pool, [credit("t", "c1", 10), credit("t", "c2", 5)], now, DAY)
        both = await reads.wallet(conn, "t")
        assert both is not None
        assert (both["expiring_amount"], both["expiring_at"]) == (15, now + DAY)

        await apply(pool, [redeem("s", "r1", 60)], now, None)
        lots = await conn.fetch(
            "SELECT amount, remaining FROM coin_lots WHERE student_id = 's' ORDER BY expires_at"
        )
        assert [tuple(lot) for lot in lots] == [(30, 0), (50, 20), (100, 100)]
        wallet = await reads.wallet(conn, "s")
        assert wallet is not None
        assert (wallet["balance"], wallet["expiring_amount"]) == (160, 20)
        assert wallet["expiring_at"] == now + 5 * DAY
        await assert_lots_in_step(conn)

        await apply(pool, [redeem("s", "r2", 150)], now, 10 * DAY)
        assert (
            await conn.fetchval("SELECT sum(remaining) FROM coin_lots WHERE student_id = 's'") == 0
        )
        wallet = await reads.wallet(conn, "s")
        assert wallet is not None
        assert (wallet["balance"], wallet["expiring_amount"]) == (10, None)
        assert await conn.fetchval("SELECT lotted FROM coin_wallets WHERE student_id = 's'") == 0
        await assert_lots_in_step(conn)


async def test_several_workers_sweeping_at_once_expire_each_lot_once_while_batches_spend(
    pool: asyncpg.Pool,
) -> None:
    students = [f"s{i:03}" for i in range(120)]
    await apply(pool, [credit(s, "old", 5) for s in students], START, None)
    for lifetime in (DAY, 2 * DAY, 30 * DAY):  # two lots due now, one not
        batch = [credit(s, f"c-{lifetime.days}", 100) for s in students]
        await apply(pool, batch, START, lifetime)

    metrics = Metrics(CollectorRegistry())
    sweepers = [
        Sweeper(pool, metrics, COIN_LOTS, interval_seconds=0.05, chunk=7, shares=partition_zero)
        for _ in range(4)
    ]

    async def spend() -> None:  # batches on the same wallets while the sweeps run
        rng = random.Random(7)  # noqa: S311 - a fixed sample, no secret
        for n in range(30):
            batch = [redeem(s, f"r{n}", rng.randint(1, 60)) for s in rng.sample(students, 10)]
            await apply(pool, batch, datetime.now(UTC), None)

    # At once, none waits for another. Not every one need find work: a sweep whose snapshot
    # was taken before another committed may lock that one's wallets, now unlocked and with
    # nothing left due, and expire nothing (seen once in CI: [14, 14, 14, 0]). That each one
    # passes over the wallets another holds is tested by
    # test_two_sweeps_of_students_with_interleaved_deadlines_hold_disjoint_wallets, with
    # both transactions held open; here, that each lot expires once.
    first_rounds = await asyncio.gather(*(sweeper.sweep_once({0}) for sweeper in sweepers))
    assert sum(first_rounds) > 0, first_rounds
    tasks = [asyncio.create_task(s.run()) for s in sweepers]
    try:
        await spend()

        async def nothing_due() -> None:
            due = await pool.fetchval(
                "SELECT count(*) FROM coin_lots WHERE remaining > 0 AND expires_at <= now()"
            )
            assert due == 0

        await eventually(nothing_due, within=30)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async with pool.acquire() as conn:
        await assert_lots_in_step(conn)
        # Each student's 30-day lot is untouched by expiry; the two due ones expired (or were
        # spent) and every expiry is announced once in the outbox, with what its entry says.
        assert await conn.fetchval(
            "SELECT count(*) FROM coin_lots WHERE remaining > 0 AND expires_at <= now()"
        ) == 0  # fmt: skip
        entries = {
            row["transaction_id"]: row
            for row in await conn.fetch(
                "SELECT transaction_id::text, student_id, reference_id, amount, balance_after"
                " FROM coin_transactions WHERE type = 'expiry'"
            )
        }
        announced = [
            json.loads(row["value"])["data"]
            for row in await conn.fetch("SELECT value FROM outbox WHERE topic = 'coins.expired'")
        ]
        assert len(announced) == len(entries) >= len(students)  # most lots had coins left
        for data in announced:
            entry = entries[data["transaction_id"]]
            assert (data["student_id"], data["reference_id"]) == (
                entry["student_id"],
                entry["reference_id"],
            )
            assert (data["amount"], data["balance_after"]) == (
                -entry["amount"],
                entry["balance_after"],
            )
    expired = metrics.registry.get_sample_value(
        "payment_worker_coins_total", {"direction": "expired"}
    )
    assert expired == -sum(entry["amount"] for entry in entries.values())


async def test_a_wallet_whose_lots_cannot_expire_is_set_aside_and_the_sweep_goes_on(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [credit(f"s{i}", "c1", 10) for i in range(5)], START, DAY)
    # A rule the sweep does not know, enforced by the database alone: s2 can never expire.
    await pool.execute(
        "ALTER TABLE coin_transactions ADD CONSTRAINT trap"
        " CHECK (NOT (student_id = 's2' AND type = 'expiry'))"
    )
    metrics = Metrics(CollectorRegistry())
    sweeper = Sweeper(pool, metrics, COIN_LOTS, interval_seconds=0.05, shares=partition_zero)
    sweeping = asyncio.create_task(sweeper.run())

    async def the_others_expired() -> None:
        assert not sweeping.done(), sweeping
        balances = dict(await pool.fetch("SELECT student_id, balance FROM coin_wallets"))
        assert balances == {f"s{i}": 10 if i == 2 else 0 for i in range(5)}

    try:
        await eventually(the_others_expired, within=30)
        failures = metrics.registry.get_sample_value("payment_worker_coin_expiry_failures_total")
        assert failures == 1
        assert not sweeping.done()
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
    async with pool.acquire() as conn:
        await assert_lots_in_step(conn)


async def test_two_sweeps_of_students_with_interleaved_deadlines_hold_disjoint_wallets(
    pool: asyncpg.Pool,
) -> None:
    # s's and t's lots fall due in turns: s, t, s, t, ... Each sweep locks only wallets, and
    # writes only the lots of the wallets it holds: they cannot wait on each other.
    for n in range(6):
        await apply(pool, [credit(s, f"c{n}", 10) for s in ("s", "t")], START + n * SECOND, DAY)
    async with pool.acquire() as one, pool.acquire() as other:
        async with one.transaction(), other.transaction():
            now = datetime.now(UTC)
            first = await coins.lock_due(one, now, 1, (), {0})
            second = await coins.lock_due(other, now, 1, (), {0})
            assert sorted([*first, *second]) == ["s", "t"]
            plans = await asyncio.wait_for(
                asyncio.gather(
                    coins.expire(one, first, now, {0}), coins.expire(other, second, now, {0})
                ),
                10,
            )
        assert [len(plan.entries) for plan in plans] == [6, 6]
        await assert_lots_in_step(one)
    balances = dict(await pool.fetch("SELECT student_id, balance FROM coin_wallets"))
    assert balances == {"s": 0, "t": 0}


async def test_each_lot_is_expired_by_the_owner_of_its_credits_input_partition(
    pool: asyncpg.Pool,
) -> None:
    # Lots made before lots kept a partition ("old") go with partition 0, until a debit that
    # draws on one gives it the debit's ("drawn"); so does a lot whose student's events come
    # from another partition now ("moved", after the topics gained partitions).
    await apply(pool, [credit(s, "c1", 10) for s in ("old", "drawn")], START, DAY)
    students = {f"s{n}": n for n in range(4)}
    await apply(pool, [credit(s, "c1", 10) for s in students], START, DAY, students)
    await apply(pool, [credit("moved", "c1", 10)], START, DAY, {"moved": 1})
    await apply(pool, [redeem("drawn", "r1", 4)], START, None, {"drawn": 3})
    await apply(pool, [redeem("moved", "r1", 4)], START, None, {"moved": 5})
    kept = dict(await pool.fetch("SELECT student_id, input_partition FROM coin_lots"))
    assert kept == {**students, "old": None, "drawn": 3, "moved": 5}

    sweeper = Sweeper(pool, Metrics(CollectorRegistry()), COIN_LOTS, interval_seconds=1)

    async def expired() -> set[str]:
        rows = await pool.fetch("SELECT student_id FROM coin_transactions WHERE type = 'expiry'")
        return {row["student_id"] for row in rows}

    assert await sweeper.sweep_once(frozenset({1, 3})) == 3
    assert await expired() == {"s1", "s3", "drawn"}
    assert await sweeper.sweep_once(frozenset({2, 5})) == 2
    assert await expired() == {"s1", "s2", "s3", "drawn", "moved"}
    assert await sweeper.sweep_once(frozenset({0})) == 2
    assert await expired() == {*students, "old", "drawn", "moved"}
    async with pool.acquire() as conn:
        await assert_lots_in_step(conn)


async def test_a_sweep_in_shares_runs_each_share_until_none_has_anything_due(
    pool: asyncpg.Pool,
) -> None:
    students = {f"s{n}": n % 3 for n in range(20)}
    await apply(pool, [credit(s, "c1", 10) for s in students], START, DAY, students)
    shares: list[frozenset[int]] = []

    async def in_shares(step: Callable[[frozenset[int]], Awaitable[int]]) -> int:
        done = 0
        for share in (frozenset({0}), frozenset({1})):  # no one owns partition 2 here
            shares.append(share)
            done += await step(share)
        return done

    sweeper = Sweeper(
        pool, Metrics(CollectorRegistry()), COIN_LOTS, interval_seconds=60, chunk=3,
        shares=in_shares,
    )  # fmt: skip
    sweeping = asyncio.create_task(sweeper.run())

    async def owned_ones_expired() -> None:
        rows = await pool.fetch("SELECT student_id FROM coin_transactions WHERE type = 'expiry'")
        assert {row["student_id"] for row in rows} == {s for s, p in students.items() if p < 2}

    try:
        await eventually(owned_ones_expired, within=30)
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
    assert len(shares) >= 2 * 3  # 7 students each in chunks of 3: three passes at least
