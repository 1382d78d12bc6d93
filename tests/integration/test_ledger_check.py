"""`payment-worker ledger check` against the real PostgreSQL: quiet on a sound database, and
each broken invariant named, with exit code 1."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.integration.test_payments_sql import _DATABASES, requested
from tests.integration.test_payments_sql import apply as apply_payments
from tests.unit.test_coin_lots import credit, redeem
from worker.cli import main
from worker.db.coins import apply_coin_commands


@pytest.fixture
async def pool(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[asyncpg.Pool]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    _DATABASES[id(pool)] = db_url  # the payments helpers find the database by it
    async with pool.acquire() as conn, conn.transaction():
        now = datetime.now(UTC)
        await apply_coin_commands(conn, [credit("s", "c1", 100), credit("t", "c1", 50)], now,
                                  timedelta(days=1))  # fmt: skip
        await apply_coin_commands(conn, [redeem("s", "r1", 30)], now)
    await apply_payments(pool, [requested("pay-1"), requested("pay-2")])
    yield pool
    del _DATABASES[id(pool)]
    await pool.close()


async def check(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """The command's exit code and output (its errors stay for `capsys` to read)."""
    code = await asyncio.to_thread(main, ["ledger", "check"])
    out, err = capsys.readouterr()
    print(err, end="", file=sys.stderr)
    return code, out


async def test_a_sound_database_passes(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await check(capsys) == (
        0,
        "ledger check: ok (balances, entries, lots, decisions, stock, payment paths)\n",
    )


async def test_every_broken_invariant_is_named_with_examples(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.execute(
        "UPDATE coin_wallets SET balance = balance + 5, lifetime_earned = lifetime_earned + 5"
        " WHERE student_id = 's'"
    )
    await pool.execute("UPDATE coin_lots SET remaining = 0 WHERE student_id = 't'")
    await pool.execute("DELETE FROM coin_transactions WHERE reference_id = 'r1'")
    await pool.execute(
        "INSERT INTO coin_transactions (transaction_id, student_id, type, reference_id, amount,"
        " balance_after, source_event_id)"
        " VALUES (gen_random_uuid(), 'ghost', 'referral', 'f1', 5, 5, 'e0')"
    )
    await pool.execute(
        "INSERT INTO payment_transitions (payment_id, status, from_status, result_topic,"
        " result_key, result_value) VALUES ('pay-2', 'refunded', 'initiated', 't', '', '')"
    )
    code, out = await check(capsys)
    assert code == 1
    assert out.splitlines() == [
        "ledger check: a payment whose status is not the end of its path: 1 (e.g. pay-2)",
        "ledger check: an applied coin decision without its entry: 1 (e.g. s redemption r1)",
        "ledger check: an illegal payment move: 1 (e.g. pay-2 initiated->refunded)",
        "ledger check: balance is not the sum of its entries: 1 (e.g. s)",
        "ledger check: coins in lots differ from the open lots: 1 (e.g. t)",
        "ledger check: entries of a wallet that does not exist: 1 (e.g. ghost)",
    ]


async def test_an_unreachable_database_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    code, _ = await check(capsys)
    assert code == 1
    [line] = capsys.readouterr().err.splitlines() or [""]
    assert line.startswith("payment-worker: the database cannot be used:")


async def test_a_database_not_yet_migrated_says_so(
    pool: asyncpg.Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    await pool.execute("DROP TABLE coin_lots")  # as before migration 0012
    code, _ = await check(capsys)
    assert code == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("payment-worker: the database is not migrated")
    assert "payment-worker migrate" in line
