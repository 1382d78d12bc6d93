"""Array parameters are built by the column names the SQL gives its unnest, never by position."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from worker.db import queries
from worker.db.payments import refund_decision
from worker.db.queries import (
    Unnest,
    unnest_all,
    unnest_arrays,
    unnest_columns,
    unnests,
)

# Every statement whose arrays are built by `unnest_arrays` or `unnest_all`.
BUILT_BY_NAME = (
    "answers_record",
    "audit_record",
    "coins_write",
    "gateway_calls_owe",
    "outbox_enqueue",
    "outbox_park",
    "parked_insert",
    "payment_refunds_settle",
    "payments_write",
)


@pytest.mark.parametrize("name", BUILT_BY_NAME)
def test_each_statement_names_each_column_it_fills_once(name: str) -> None:
    for unnest in unnests(name):
        assert len(unnest.columns) == len(set(unnest.columns)) >= 2
        assert all(column.isidentifier() for column in unnest.columns)


def test_the_hot_writes_take_arrays_of_rows() -> None:
    rows = {
        name: [unnest.rows for unnest in unnests(name) if unnest.rows] for name in BUILT_BY_NAME
    }
    assert {name: types for name, types in rows.items() if types} == {
        "answers_record": ["event_answer_row"],
        "coins_write": [
            "coin_request_row", "coin_wallet_row", "coin_entry_row", "event_answer_row",
            "coin_lot_row",
        ],
        "payments_write": [
            "payment_row", "payment_update_row", "payment_transition_row", "event_answer_row",
        ],
    }  # fmt: skip


def test_the_columns_come_in_the_order_of_the_parameters_or_of_the_row() -> None:
    assert unnests("payments_write")[1].columns == (
        "payment_id", "status", "status_reason", "provider_payment_id", "payment_url",
        "expires_at", "captured_id",
    )  # fmt: skip
    # WITH ORDINALITY's position column is not a parameter.
    assert unnest_columns("outbox_enqueue") == ("topic", "key", "value", "headers")
    assert [len(unnest.columns) for unnest in unnests("coins_write")] == [8, 5, 7, 7, 6, 2, 3, 2, 3]
    assert [len(unnest.columns) for unnest in unnests("payments_write")] == [13, 7, 8, 9, 3, 7, 4]


# Columns of a type asyncpg decodes inside a row as it is (not a domain).
_PLAIN_COLUMNS = {"first_day", "last_day"}


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Makes every statement name read as the given text, with nothing cached from before."""

    def statement(text: str) -> None:
        monkeypatch.setattr(queries, "sql", lambda _: text)
        unnests.cache_clear()

    yield statement
    unnests.cache_clear()


@dataclass
class Row:
    b: str
    a: str
    c: int


def test_arrays_are_taken_by_name_whatever_the_rows_field_order(
    given: Callable[[str], None],
) -> None:
    given("SELECT * FROM unnest($1::text[], $2::text[], $3::int[]) AS v (a, b, c)")
    rows = [Row(b="b1", a="a1", c=1), Row(b="b2", a="a2", c=2)]
    assert unnest_arrays("t", rows) == [["a1", "a2"], ["b1", "b2"], [1, 2]]
    assert unnest_arrays("t", rows, c=lambda row: row.c * 10)[2] == [10, 20]
    with pytest.raises(ValueError, match=r"unnests no column named \['d'\]"):
        unnest_arrays("t", rows, d=lambda row: 0)
    with pytest.raises(AttributeError):
        unnest_arrays("t", [object()])


def test_an_unnest_of_one_array_of_rows_takes_a_tuple_per_row_in_the_named_order(
    given: Callable[[str], None],
) -> None:
    given(
        "WITH x AS (SELECT * FROM unnest($1::pair_row[]) WITH ORDINALITY AS v (c, a, position))"
        " SELECT * FROM unnest($2::text[], $3::text[]) AS w (a, b)"
    )
    assert unnests("t") == (Unnest(("c", "a"), "pair_row"), Unnest(("a", "b"), None))
    rows = [Row(b="b1", a="a1", c=1), Row(b="b2", a="a2", c=2)]
    assert unnest_all("t", (rows, {}), (rows[:1], {})) == [
        [(1, "a1"), (2, "a2")], ["a1"], ["b1"],
    ]  # fmt: skip
    assert unnest_all("t", ([], {}), ([], {})) == [[], [], []]


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM unnest($1::text[], $2::text[])",  # columns not named
        "SELECT * FROM unnest($2::text[], $1::text[]) AS v (a, b)",  # parameters out of order
        "SELECT * FROM unnest($1::text[], $2::text[]) AS v (a, b, c)",  # a name too many
        "SELECT * FROM unnest($1::text[]) AS v (a), unnest($2::text[]) AS w (b)",  # two
        "SELECT * FROM unnest($1::text[]) AS v (a, b)",  # one array, not of rows, two names
    ],
)
def test_a_statement_that_does_not_name_its_columns_plainly_is_refused(
    statement: str, given: Callable[[str], None]
) -> None:
    given(statement)
    with pytest.raises(ValueError, match=r"\.sql: "):
        unnest_columns("bad")


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("SELECT * FROM unnest($1::pair_row) AS v (a, b)", "cast to an array"),
        ("SELECT * FROM unnest($1::pair_row[], $2::text) AS v (a, b)", "cast to an array"),
        ("SELECT * FROM unnest($1::text[], $2::double precision[]) AS v (a, b)", "one word"),
        ("SELECT * FROM unnest($1::pair_row[], $2::text[]) AS v (a, b)", "the only parameter"),
        ("SELECT * FROM unnest($1::text[], $2::pair_row[]) AS v (a, b)", "the only parameter"),
    ],
)
def test_a_parameter_that_is_no_array_or_rows_beside_columns_are_refused_saying_so(
    statement: str, why: str, given: Callable[[str], None]
) -> None:
    given(statement)
    with pytest.raises(ValueError, match=why):
        unnests("bad")


def test_a_statement_of_several_unnests_takes_one_group_per_unnest_in_order(
    given: Callable[[str], None],
) -> None:
    given(
        "WITH x AS (INSERT INTO t SELECT * FROM unnest($1::text[], $2::int[]) AS v (a, c)) "
        "SELECT * FROM unnest($3::text[]) WITH ORDINALITY AS w (b, position)"
    )
    assert unnests("t") == (Unnest(("a", "c"), None), Unnest(("b",), None))
    rows = [Row(b="b1", a="a1", c=1)]
    assert unnest_all("t", (rows, {}), (rows, {"b": lambda row: row.b + "!"})) == [
        ["a1"], [1], ["b1!"],
    ]  # fmt: skip
    with pytest.raises(ValueError, match="has 2 unnests, not 1"):
        unnest_all("t", (rows, {}))
    with pytest.raises(ValueError, match=r"unnests no column named \['b'\]"):
        unnest_all("t", (rows, {"b": str}), (rows, {}))


@pytest.mark.parametrize(
    "statement",
    [
        # the second unnest does not take the parameters after the first's
        "SELECT * FROM unnest($1::text[]) AS v (a), unnest($3::text[]) AS w (b)",
        "SELECT * FROM unnest($2::text[]) AS v (a), unnest($1::text[]) AS w (b)",
    ],
)
def test_unnests_must_take_the_parameters_in_turn(
    statement: str, given: Callable[[str], None]
) -> None:
    given(statement)
    with pytest.raises(ValueError, match="each unnest must take the next"):
        unnests("bad")


@pytest.mark.parametrize(
    ("statement", "count"),
    [("coins_read", 37), ("catalog_read", 12), ("payments_read", 31)],
)
def test_every_field_of_a_row_read_back_is_cast_to_its_base_type(
    statement: str, count: int
) -> None:
    # asyncpg decodes a ROW(...) field by its type, and has no decoder for a domain there.
    rows = re.findall(r"ROW\(([^()]*)\)", queries.sql(statement))
    fields = [field.strip() for row in rows for field in row.split(",")]
    assert len(fields) == count
    assert all(
        re.fullmatch(r"\w+\.\w+(::(text|bigint|bytea|timestamptz))?", field)
        and (field.split("::")[0].split(".")[1] in _PLAIN_COLUMNS or "::" in field)
        for field in fields
    ), fields


def test_a_refund_a_batch_reads_back_has_the_fields_refund_decision_takes_in_order() -> None:
    # payments_read returns refunds as anonymous rows, unpacked by position.
    rows = re.findall(r"ROW\(([^()]*)\)", queries.sql("payments_read"))
    [refund] = [row for row in rows if "f.refund_id" in row]
    names = [field.strip().split("::")[0].split(".")[1] for field in refund.split(",")]
    assert names == list(inspect.signature(refund_decision).parameters)
