"""An array of rows fills the columns its unnest names in the order of its row type's fields:
each name must be the field's, or two fields of one type would be swapped silently."""

from __future__ import annotations

import asyncpg

from worker.db.queries import _all, unnests


def _row_unnests() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Every statement that unnests arrays of rows: (row type, the columns named) per such
    unnest. Statements whose unnests are not built by name (no column list) are left out."""
    found: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for name in sorted(_all()):
        try:
            named = unnests(name)
        except ValueError:
            continue
        if rows := [(u.rows, u.columns) for u in named if u.rows]:
            found[name] = rows
    return found


def test_the_hot_writes_take_arrays_of_rows() -> None:
    assert set(_row_unnests()) == {
        "answers_record",
        "coins_write",
        "payment_transitions_insert",
        "payments_insert",
        "payments_update",
    }
    assert len(_row_unnests()["coins_write"]) == 5


async def test_each_row_unnest_names_its_row_types_fields_in_order(
    conn: asyncpg.Connection,
) -> None:
    for name, rows in _row_unnests().items():
        for row_type, columns in rows:
            fields = await conn.fetch(
                "SELECT a.attname FROM pg_type AS t JOIN pg_attribute AS a"
                " ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped"
                " WHERE t.typname = $1 ORDER BY a.attnum",
                row_type,
            )
            assert tuple(f["attname"] for f in fields) == columns, (name, row_type)
