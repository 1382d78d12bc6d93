"""Migrations: the schema they build, applied once, safely from two workers at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from asyncpg.transaction import Transaction

from tests.support import eventually
from tests.unit.test_coin_lots import credit, redeem
from worker.db.coins import apply_coin_commands
from worker.db.migrate import apply_migrations, apply_migrations_in, discover
from worker.db.outbox import decode_headers
from worker.db.queries import sql

EXPECTED_COLUMNS = {
    "coin_wallets": {
        "student_id", "balance", "lifetime_earned", "lifetime_spent", "created_at", "updated_at",
        "lotted",
    },
    "coin_transactions": {
        "seq", "transaction_id", "student_id", "type", "reference_id", "amount",
        "balance_after", "source_event_id", "created_at",
    },
    "payments": {
        "seq", "payment_id", "student_id", "course_id", "amount", "currency", "description",
        "status", "status_reason", "provider", "provider_payment_id", "payment_url",
        "expires_at", "source_event_id", "created_at", "updated_at", "captured_id",
    },
    "coin_requests": {
        "student_id", "type", "reference_id", "requested_amount", "outcome", "result_topic",
        "result_value", "created_at", "item_id",
    },
    "payment_transitions": {
        "payment_id", "status", "from_status", "result_topic", "result_key", "result_value",
        "source_event_id", "created_at", "provider_event_id",
    },
    "payment_refunds": {
        "refund_id", "payment_id", "outcome", "actor_id", "reason", "result_topic", "result_key",
        "result_value", "created_at", "source_event_id",
    },
    "gateway_calls": {
        "kind", "reference_id", "payment_id", "attempts", "not_before", "first_tried_at",
        "last_error", "answers_owed", "asked_expires_at", "created_at",
    },
    "outbox": {"seq", "topic", "key", "value", "headers", "created_at"},
    "event_answers": {
        "answer_id", "event_type", "event_source", "event_id", "result_topic", "result_key",
        "result_value", "created_at",
    },
    "parked_messages": {
        "seq", "outbox_seq", "topic", "key", "value", "headers", "error_class", "error_message",
        "queued_at", "parked_at",
    },
    "schema_migrations": {"version", "name", "checksum", "applied_at"},
    "admin_audit": {
        "seq", "recorded_at", "action", "subject", "reference_id", "actor_id", "actor_role",
        "event_source", "event_id", "change",
    },
    "course_streaks": {"student_id", "first_day", "last_day"},
    "coin_lots": {
        "transaction_id", "student_id", "amount", "remaining", "expires_at", "input_partition",
    },
    "catalog_items": {
        "item_id", "version", "title", "cost_coins", "stock", "active_from", "active_until",
        "per_student_limit", "updated_at",
    },
    "catalog_versions": {"item_id", "version", "digest", "result_value", "created_at"},
    "catalog_redemptions": {"item_id", "student_id", "redeemed"},
}  # fmt: skip

EXPECTED_UNIQUE = {
    "coin_transactions": {("student_id", "type", "reference_id"), ("transaction_id",)},
    "payments": {("provider", "provider_payment_id"), ("seq",)},
    "admin_audit": {("action", "subject", "reference_id")},
}


async def _columns(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns"
        " WHERE table_schema = 'public'"
    )
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["table_name"], set()).add(row["column_name"])
    return found


async def _unique_constraints(conn: asyncpg.Connection, table: str) -> set[tuple[str, ...]]:
    rows = await conn.fetch(
        "SELECT array_agg(a.attname ORDER BY k.ord) AS cols"
        " FROM pg_constraint c"
        " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
        " WHERE c.conrelid = $1::regclass AND c.contype = 'u' GROUP BY c.oid",
        table,
    )
    return {tuple(row["cols"]) for row in rows}


async def test_applying_all_gives_the_expected_schema(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        applied = await apply_migrations(conn)
        assert [m.version for m in applied] == [m.version for m in discover()]
        assert await _columns(conn) == EXPECTED_COLUMNS
        for table, expected in EXPECTED_UNIQUE.items():
            assert await _unique_constraints(conn, table) == expected
    finally:
        await conn.close()


async def test_wallets_keep_room_for_updates_and_no_key_checks_each_entry(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await apply_migrations(conn)
        options = "SELECT reloptions FROM pg_class WHERE oid = 'coin_wallets'::regclass"
        assert await conn.fetchval(options) == ["fillfactor=70"]
        # Entries are checked against their wallets by the statement that writes them (0015).
        keys = "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = $1::regclass"
        assert await conn.fetchval(keys, "coin_transactions") == 0
    finally:
        await conn.close()


async def test_migration_15_waits_for_a_batch_under_way_and_never_deadlocks_it(
    empty_db: str,
) -> None:
    """A batch locks its wallets, then writes entries; 0015 must take the tables in that order
    (dropping the key alone takes entries, then wallets: a deadlock with the batch)."""
    batch, migrating = await asyncpg.connect(empty_db), await asyncpg.connect(empty_db)
    try:
        await _at_version(batch, 14)
        locked = await _a_batch_holding_a_wallet(batch)
        applying = asyncio.create_task(apply_migrations(migrating))

        await eventually(lambda: _one_waits_on_a_lock(batch))
        # The batch goes on: its entry, then its commit. With the tables taken in the other
        # order, one of the two would be cancelled as a deadlock here.
        await batch.execute(
            "INSERT INTO coin_transactions (transaction_id, student_id, type, reference_id,"
            " amount, balance_after, source_event_id)"
            " VALUES (gen_random_uuid(), 's', 'course_completion', 'c1', 5, 5, 'e1')"
        )
        await batch.execute("UPDATE coin_wallets SET balance = 5, lifetime_earned = 5")
        await locked.commit()
        assert [m.version for m in await applying] == _from(15)
    finally:
        await batch.close()
        await migrating.close()


async def test_a_migration_that_loses_a_deadlock_to_a_batch_is_applied_again(
    empty_db: str,
) -> None:
    """From 0013 to 0015 while an older worker's batch runs: 0014 locks coin_lots, 0015 waits
    for the batch's wallets, and the batch then reads coin_lots. PostgreSQL cancels the
    migration, which waited first; it is applied again, whole, once the batch is done."""
    batch = await asyncpg.connect(empty_db)
    pool = await asyncpg.create_pool(empty_db, min_size=1, max_size=1)
    try:
        await _at_version(batch, 13)
        locked = await _a_batch_holding_a_wallet(batch)
        applying = asyncio.create_task(apply_migrations_in(pool))

        await eventually(lambda: _one_waits_on_a_lock(batch))
        try:  # the deadlock: the migration, which waited first, is cancelled
            assert await batch.fetchval("SELECT count(*) FROM coin_lots") == 0
            await locked.commit()
        except asyncpg.DeadlockDetectedError:
            # Only should this test stall past deadlock_timeout (1 s) between seeing the
            # migration wait and this read: then the batch is the one cancelled.
            await locked.rollback()
        assert [m.version for m in await applying] == _from(14)
        assert await batch.fetchval("SELECT max(version) FROM schema_migrations") == _from(14)[-1]
    finally:
        await batch.close()
        await pool.close()


async def test_applying_twice_changes_nothing(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await apply_migrations(conn)
        before = await _columns(conn)
        assert await apply_migrations(conn) == []
        assert await _columns(conn) == before
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(discover())
    finally:
        await conn.close()


async def test_two_workers_migrating_at_once_apply_each_migration_once(empty_db: str) -> None:
    first, second = await asyncpg.connect(empty_db), await asyncpg.connect(empty_db)
    try:
        results = await asyncio.gather(apply_migrations(first), apply_migrations(second))
        assert sorted(len(r) for r in results) == [0, len(discover())]
    finally:
        await first.close()
        await second.close()


async def test_messages_queued_before_headers_became_bytes_keep_their_headers(
    empty_db: str,
) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await _at_version(conn, 4)  # the schema as it was, headers as JSON text
        stored = '[["content-type", "YXBwbGljYXRpb24vanNvbg=="], ["x-nothing", null], ["é", ""]]'
        await conn.execute(
            "INSERT INTO outbox (topic, key, value, headers) VALUES ('t', 'k', 'v', $1::jsonb)",
            stored,
        )
        await conn.execute("INSERT INTO outbox (topic, key, value) VALUES ('t', 'k', 'v')")
        await apply_migrations(conn)
        rows = await conn.fetch("SELECT headers FROM outbox ORDER BY seq")
        assert [decode_headers(r["headers"]) for r in rows] == [
            (("content-type", b"application/json"), ("x-nothing", None), ("é", b"")),
            (),
        ]
    finally:
        await conn.close()


async def test_coins_from_before_expiry_existed_never_expire_and_are_spent_last(
    empty_db: str,
) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await _at_version(conn, 11)  # the schema before coin lots
        await conn.execute(
            "INSERT INTO coin_wallets (student_id, balance, lifetime_earned) VALUES ('s', 70, 70)"
        )
        await apply_migrations(conn)
        assert await conn.fetchval("SELECT lotted FROM coin_wallets") == 0
        now = datetime.now(UTC)
        async with conn.transaction():
            await apply_coin_commands(conn, [credit("s", "c1", 30)], now, timedelta(days=1))
        async with conn.transaction():
            await apply_coin_commands(conn, [redeem("s", "r1", 50)], now)
        wallet = await conn.fetchrow("SELECT balance, lotted FROM coin_wallets")
        assert (wallet["balance"], wallet["lotted"]) == (50, 0)  # the lot first, then 20 old
        assert await conn.fetchval("SELECT remaining FROM coin_lots") == 0
    finally:
        await conn.close()


async def test_changed_migration_is_refused(empty_db: str) -> None:
    conn = await asyncpg.connect(empty_db)
    try:
        await apply_migrations(conn)
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(Exception, match="changed after it was applied"):
            await apply_migrations(conn)
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("statement", "violated"),
    [
        ("INSERT INTO coin_wallets (student_id, balance) VALUES ('s', -1)", "balance_check"),
        (
            "INSERT INTO coin_wallets (student_id, balance, lifetime_earned)"
            " VALUES ('s', 9007199254740992, 9007199254740992)",
            "json_safe_int_check",
        ),
        ("INSERT INTO coin_wallets (student_id) VALUES ('')", "ref_id_check"),
        (
            "INSERT INTO coin_wallets (student_id, balance, lifetime_earned) VALUES ('s', 5, 4)",
            "coin_wallets_balance_is_earned_minus_spent",
        ),
        (
            "INSERT INTO payments (payment_id, student_id, course_id, amount, currency, status,"
            " provider, provider_payment_id, payment_url, expires_at, source_event_id)"
            " VALUES ('p', 's', 'c', 100, 'INR', 'paid', 'mock', 'pp', 'u', now(), 'e')",
            "payments_status_check",
        ),
    ],
)
async def test_constraints_refuse_impossible_rows(
    conn: asyncpg.Connection, statement: str, violated: str
) -> None:
    with pytest.raises(asyncpg.IntegrityConstraintViolationError) as caught:
        await conn.execute(statement)
    assert violated in str(caught.value)


async def test_one_ledger_entry_per_student_type_and_reference(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO coin_wallets (student_id, balance, lifetime_earned) VALUES ('s', 200, 200)"
    )
    insert = (
        "INSERT INTO coin_transactions (transaction_id, student_id, type, reference_id, amount,"
        " balance_after, source_event_id) VALUES (gen_random_uuid(), 's', 'referral', 'r1', $1,"
        " $2, 'e')"
    )
    await conn.execute(insert, 100, 100)
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, 100, 200)


def _from(version: int) -> list[int]:
    """The versions from `version` on, up to the newest."""
    return [m.version for m in discover() if m.version >= version]


async def _at_version(conn: asyncpg.Connection, version: int) -> None:
    """The schema as migrations 1..`version` left it, recorded as applied."""
    await conn.execute(sql("migrations_table"))
    for migration in discover()[:version]:
        await conn.execute(migration.sql)
        await conn.execute(
            sql("migrations_record"), migration.version, migration.name, migration.checksum
        )


async def _a_batch_holding_a_wallet(conn: asyncpg.Connection) -> Transaction:
    """A batch under way, as the worker's are: its transaction open, its wallet locked."""
    await conn.execute("INSERT INTO coin_wallets (student_id) VALUES ('s')")
    locked = conn.transaction()
    await locked.start()
    await conn.execute("SELECT 1 FROM coin_wallets WHERE student_id = 's' FOR UPDATE")
    return locked


async def _one_waits_on_a_lock(observer: asyncpg.Connection) -> None:
    waiting = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    assert await observer.fetchval(waiting) == 1
