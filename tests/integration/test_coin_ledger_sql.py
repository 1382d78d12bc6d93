"""The ledger adapter against the real PostgreSQL: set-based writes, locks, invariants."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import eventually, waits_on_a_lock
from tests.unit.test_coin_rules import DAY1, on
from tests.unit.test_coins import commands as coin_commands
from worker.core.coins import CoinCommand, CoinPlan, Wallet, decide_coins
from worker.db import coins
from worker.db.coins import apply_coin_commands
from worker.errors import ConcurrentWriteError, PermanentError, is_retriable

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def apply(conn: asyncpg.Connection, batch: list[CoinCommand]) -> None:
    async with conn.transaction():
        await apply_coin_commands(conn, batch, NOW)


async def assert_invariants(conn: asyncpg.Connection) -> None:
    mismatched = await conn.fetch(
        "SELECT w.student_id, w.balance, coalesce(sum(t.amount), 0) AS total"
        " FROM coin_wallets w LEFT JOIN coin_transactions t USING (student_id)"
        " GROUP BY w.student_id, w.balance HAVING w.balance <> coalesce(sum(t.amount), 0)"
    )
    assert mismatched == []
    assert await conn.fetchval("SELECT count(*) FROM coin_wallets WHERE balance < 0") == 0
    # Every entry's balance_after is the running sum of the student's entries up to it.
    drift = await conn.fetchval(
        "SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER"
        " (PARTITION BY student_id ORDER BY seq) AS running FROM coin_transactions) AS e"
        " WHERE balance_after <> running"
    )
    assert drift == 0


async def test_applied_batch_writes_entries_decisions_and_wallets(
    conn: asyncpg.Connection,
) -> None:
    batch = [
        CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed"),
        CoinCommand("s", "redemption", "r1", -30, 30, "e2", "coins.redemption.requested"),
        CoinCommand("s", "redemption", "r2", -500, 500, "e3", "coins.redemption.requested"),
    ]
    await apply(conn, batch)
    wallet = await conn.fetchrow("SELECT * FROM coin_wallets WHERE student_id = 's'")
    assert (wallet["balance"], wallet["lifetime_earned"], wallet["lifetime_spent"]) == (70, 100, 30)
    decisions = await conn.fetch(
        "SELECT reference_id, outcome, result_topic FROM coin_requests ORDER BY reference_id"
    )
    assert [tuple(d) for d in decisions] == [
        ("c1", "applied", "coins.credited"),
        ("r1", "applied", "coins.debited"),
        ("r2", "rejected", "coins.rejected"),
    ]
    await assert_invariants(conn)


async def test_replayed_batch_changes_nothing(conn: asyncpg.Connection) -> None:
    batch = [CoinCommand("s", "referral", "f1", 50, None, "e1", "referral.succeeded")]
    await apply(conn, batch)
    before = await conn.fetch("SELECT * FROM coin_transactions")
    await apply(
        conn, [CoinCommand("s", "referral", "f1", 50, None, "e-other", "referral.succeeded")]
    )
    assert await conn.fetch("SELECT * FROM coin_transactions") == before
    assert await conn.fetchval("SELECT balance FROM coin_wallets") == 50


async def test_a_kept_answer_is_found_by_type_source_and_id_together(
    conn: asyncpg.Connection,
) -> None:
    def unauthorized(reference: str, event_type: str, source: str) -> CoinCommand:
        return CoinCommand(
            "s", "manual_adjustment", reference, 5, 5, "e1", event_type,
            authorized=False, event_source=source,
        )  # fmt: skip

    first = await _decide(conn, [unauthorized("a1", "coins.adjustment.requested", "admin")])
    # The same event again, whatever it asks now: its first answer, byte for byte.
    again = await _decide(conn, [unauthorized("a2", "coins.adjustment.requested", "admin")])
    assert again.messages == first.messages
    assert again.outcomes[0][1] == "duplicate"
    # The same id from another source, or of another type, is another event.
    for other in (
        unauthorized("a1", "coins.adjustment.requested", "console"),
        unauthorized("a1", "coins.redemption.requested", "admin"),
    ):
        plan = await _decide(conn, [other])
        assert plan.outcomes[0][1] == "rejected"  # answered afresh, not "duplicate"
    kept = await conn.fetch("SELECT event_type, event_source FROM event_answers ORDER BY 1, 2")
    assert [tuple(k) for k in kept] == [
        ("coins.adjustment.requested", "admin"),
        ("coins.adjustment.requested", "console"),
        ("coins.redemption.requested", "admin"),
    ]


async def test_a_decision_or_answer_kept_meanwhile_fails_the_write_retriably(
    conn: asyncpg.Connection,
) -> None:
    credit = CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed")
    refused = CoinCommand(
        "s", "manual_adjustment", "a1", 5, 5, "e2", "coins.adjustment.requested",
        authorized=False, event_source="admin",
    )  # fmt: skip
    plan = await _decide(conn, [credit, refused])
    assert (len(plan.decisions), len(plan.answers)) == (1, 1)  # a refusal is kept by event
    # The same writes again, as a transaction that did not see the first one's would make them.
    for again in (
        CoinPlan(decisions=plan.decisions),
        CoinPlan(answers=plan.answers),
    ):
        with pytest.raises(ConcurrentWriteError) as raised:
            async with conn.transaction():
                await coins._write(conn, again)
        assert is_retriable(raised.value)
    assert await conn.fetchval("SELECT count(*) FROM coin_requests") == 1
    assert await conn.fetchval("SELECT count(*) FROM event_answers") == 1
    await assert_invariants(conn)


async def test_a_ledger_entry_whose_key_has_no_decision_fails_the_batch_for_good(
    conn: asyncpg.Connection,
) -> None:
    # An entry written outside the decisions (by hand, or before they were kept): the batch
    # that decides its key cannot write its own, and retrying cannot change that.
    await conn.execute(
        "INSERT INTO coin_wallets (student_id, balance, lifetime_earned) VALUES ('s', 7, 7)"
    )
    await conn.execute(
        "INSERT INTO coin_transactions (transaction_id, student_id, type, reference_id, amount,"
        " balance_after, source_event_id)"
        " VALUES (gen_random_uuid(), 's', 'course_completion', 'c1', 7, 7, 'e0')"
    )
    credit = CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed")
    with pytest.raises(PermanentError) as raised:
        await apply(conn, [credit])
    assert not is_retriable(raised.value)
    assert await conn.fetchval("SELECT count(*) FROM coin_requests") == 0  # rolled back whole
    assert await conn.fetchval("SELECT balance FROM coin_wallets") == 7


async def test_a_batch_that_changes_a_wallet_that_does_not_exist_fails_for_good(
    conn: asyncpg.Connection,
) -> None:
    # No foreign key checks ledger entries row by row (migration 0015): the statement that
    # writes them does, and writes an entry only with its wallet's new balance.
    credit = CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed")
    plan = decide_coins([credit], {}, {"s": Wallet()}, NOW)
    assert (list(plan.wallets), len(plan.entries)) == (["s"], 1)
    # The wallet missing; left out as well; or changed without an entry (a lot drawn on).
    for broken in (plan, replace(plan, wallets={}), CoinPlan(wallets=plan.wallets)):
        with pytest.raises(PermanentError) as raised:
            async with conn.transaction():
                await coins._write(conn, broken)
        assert not is_retriable(raised.value)
    for table in ("coin_requests", "coin_transactions", "coin_wallets"):  # rolled back whole
        assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0  # noqa: S608
    await apply(conn, [credit])  # the wallet made first, as every batch does
    await assert_invariants(conn)
    assert await conn.fetchval("SELECT balance FROM coin_wallets") == 100


async def test_a_wallet_is_never_removed(conn: asyncpg.Connection) -> None:
    await apply(
        conn, [CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed")]
    )
    for statement in (
        "DELETE FROM coin_wallets",
        "TRUNCATE coin_wallets",
        "UPDATE coin_wallets SET student_id = 't'",
        "UPDATE coin_transactions SET student_id = 't'",
    ):
        with pytest.raises(asyncpg.RestrictViolationError, match="never removed") as raised:
            await conn.execute(statement)
        assert not is_retriable(raised.value)  # a flow that tried would fail, not wait for ever
    assert await conn.fetchval("SELECT count(*) FROM coin_wallets WHERE student_id = 's'") == 1
    await assert_invariants(conn)


async def test_two_transactions_on_one_wallet_serialise_on_its_lock(db_url: str) -> None:
    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        await apply(
            first, [CoinCommand("s", "course_completion", "c1", 100, None, "e", "course.completed")]
        )
        spend = [
            CoinCommand("s", "redemption", f"r{i}", -80, 80, "e", "coins.redemption.requested")
            for i in range(2)
        ]
        await asyncio.gather(apply(first, spend[:1]), apply(second, spend[1:]))
        assert await first.fetchval("SELECT balance FROM coin_wallets") == 20
        await assert_invariants(first)
    finally:
        await first.close()
        await second.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=st.lists(st.lists(coin_commands, max_size=10), max_size=5))
async def test_any_sequence_of_batches_keeps_the_database_invariants(
    conn: asyncpg.Connection, batches: list[list[CoinCommand]]
) -> None:
    async with conn.transaction():
        savepoint = conn.transaction()
        await savepoint.start()
        for batch in batches:
            await apply_coin_commands(conn, batch, NOW)
        await assert_invariants(conn)
        await savepoint.rollback()


async def test_the_same_key_in_two_transactions_at_once_repeats_the_first_decision(
    db_url: str,
) -> None:
    # Two batches hold one key at once: a rebalance, or a member evicted while its batch waited
    # on the database. The second must wait for the first, then repeat its decision.
    first, second = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        original = CoinCommand("s", "course_completion", "c1", 100, None, "e1", "course.completed")
        again = CoinCommand("s", "course_completion", "c1", 100, None, "e2", "course.completed")
        async with first.transaction():
            applied = await apply_coin_commands(first, [original], NOW)
            racing = asyncio.create_task(_decide(second, [again]))
            await eventually(lambda: waits_on_a_lock(first, second), within=10)
        repeated = await racing
        assert repeated.outcomes == [(again, "duplicate")]
        assert repeated.messages == applied.messages
        assert await first.fetchval("SELECT count(*) FROM coin_transactions") == 1
        assert await first.fetchval("SELECT balance FROM coin_wallets") == 100
    finally:
        await first.close()
        await second.close()


async def _decide(conn: asyncpg.Connection, batch: list[CoinCommand]) -> CoinPlan:
    async with conn.transaction():
        return await apply_coin_commands(conn, batch, NOW)


async def test_streak_runs_and_bonuses_are_kept_across_batches(conn: asyncpg.Connection) -> None:
    """Days 1, 2 and 4 in one batch, day 3 in the next: one run of four days, one bonus; the
    day-3 event delivered again repeats its credit and its bonus from the database."""
    await apply(conn, [on(1), on(2), on(4)])
    runs = "SELECT first_day, last_day FROM course_streaks WHERE student_id = 's' ORDER BY 1"
    assert [tuple(r) for r in await conn.fetch(runs)] == [
        (DAY1, DAY1 + timedelta(days=1)), (DAY1 + timedelta(days=3),) * 2,
    ]  # fmt: skip
    async with conn.transaction():
        first = await apply_coin_commands(conn, [on(3)], NOW)
    assert [tuple(r) for r in await conn.fetch(runs)] == [(DAY1, DAY1 + timedelta(days=3))]
    bonus = await conn.fetchrow(
        "SELECT reference_id, amount, source_event_id FROM coin_transactions"
        " WHERE type = 'streak_bonus'"
    )
    assert tuple(bonus) == ("streak:2026-11-01:3", 50, "e-3")
    async with conn.transaction():
        again = await apply_coin_commands(conn, [on(3)], NOW)
    assert again.messages == first.messages  # the credit and the bonus, byte for byte
    assert len(again.messages) == 2
    async with conn.transaction():  # again, on a worker that has no rules file now
        without_rules = await apply_coin_commands(conn, [replace(on(3), reward=None)], NOW)
    assert without_rules.messages == first.messages
    assert await conn.fetchval("SELECT count(*) FROM coin_transactions") == 5
    await assert_invariants(conn)
