"""The row types the hottest writes take (migration 0016). PostgreSQL gives an array of rows'
fields the unnest's column names in turn, and the worker builds each row in that order: what
must hold is each field's type (an `int` where a `bigint` was would refuse large amounts only),
and, so that the SQL reads true, the fields' names."""

from __future__ import annotations

import asyncpg

from worker.db.queries import _all, unnests

# Each row type's fields, in order, with the types the arrays per column had before them.
EXPECTED_ROW_TYPES = {
    "coin_request_row": (
        ("student_id", "text"), ("ledger_type", "text"), ("reference_id", "text"),
        ("requested_amount", "bigint"), ("outcome", "text"), ("result_topic", "text"),
        ("result_value", "bytea"), ("item_id", "text"),
    ),
    "coin_wallet_row": (
        ("student_id", "text"), ("balance", "bigint"), ("lifetime_earned", "bigint"),
        ("lifetime_spent", "bigint"), ("lotted", "bigint"),
    ),
    "coin_entry_row": (
        ("transaction_id", "uuid"), ("student_id", "text"), ("ledger_type", "text"),
        ("reference_id", "text"), ("amount", "bigint"), ("balance_after", "bigint"),
        ("source_event_id", "text"),
    ),
    "event_answer_row": (
        ("answer_id", "uuid"), ("event_type", "text"), ("event_source", "text"),
        ("event_id", "text"), ("result_topic", "text"), ("result_key", "bytea"),
        ("result_value", "bytea"),
    ),
    "coin_lot_row": (
        ("transaction_id", "uuid"), ("student_id", "text"), ("amount", "bigint"),
        ("remaining", "bigint"), ("expires_at", "timestamp with time zone"),
        ("input_partition", "integer"),
    ),
    "payment_row": (
        ("payment_id", "text"), ("student_id", "text"), ("course_id", "text"),
        ("amount", "bigint"), ("currency", "text"), ("description", "text"), ("status", "text"),
        ("status_reason", "text"), ("provider", "text"), ("provider_payment_id", "text"),
        ("payment_url", "text"), ("expires_at", "timestamp with time zone"),
        ("source_event_id", "text"),
    ),
    "payment_update_row": (
        ("payment_id", "text"), ("status", "text"), ("status_reason", "text"),
        ("provider_payment_id", "text"), ("payment_url", "text"),
        ("expires_at", "timestamp with time zone"), ("captured_id", "text"),
    ),
    "payment_transition_row": (
        ("payment_id", "text"), ("to_status", "text"), ("from_status", "text"),
        ("result_topic", "text"), ("result_key", "bytea"), ("result_value", "bytea"),
        ("source_event_id", "text"), ("provider_event_id", "text"),
    ),
}  # fmt: skip


async def _row_types(conn: asyncpg.Connection) -> dict[str, tuple[tuple[str, str], ...]]:
    """The composite types of the schema that are no table's row, with their fields."""
    rows = await conn.fetch(
        "SELECT t.typname, a.attname, format_type(a.atttypid, a.atttypmod) AS type"
        " FROM pg_type AS t JOIN pg_class AS c ON c.oid = t.typrelid AND c.relkind = 'c'"
        " JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE t.typnamespace = 'public'::regnamespace ORDER BY t.typname, a.attnum"
    )
    found: dict[str, tuple[tuple[str, str], ...]] = {}
    for row in rows:
        found[row["typname"]] = (*found.get(row["typname"], ()), (row["attname"], row["type"]))
    return found


async def test_the_row_types_have_the_fields_and_types_the_arrays_had(
    conn: asyncpg.Connection,
) -> None:
    assert await _row_types(conn) == EXPECTED_ROW_TYPES


async def test_each_array_of_rows_names_its_row_types_fields_in_order(
    conn: asyncpg.Connection,
) -> None:
    types = await _row_types(conn)
    used = set()
    for name in sorted(_all()):
        try:
            found = unnests(name)
        except ValueError:  # no unnest built by name
            continue
        for unnest in found:
            if unnest.rows:
                fields = tuple(field for field, _ in types[unnest.rows])
                assert unnest.columns == fields, (name, unnest.rows)
                used.add(unnest.rows)
    assert used == set(EXPECTED_ROW_TYPES)
