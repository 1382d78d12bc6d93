"""Named static SQL: one statement per `.sql` file in `worker/db/sql`, loaded on first use."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from operator import attrgetter
from typing import Any, NamedTuple


@cache
def _all() -> dict[str, str]:
    return {
        entry.name.removesuffix(".sql"): entry.read_text("utf-8")
        for entry in resources.files("worker.db.sql").iterdir()
        if entry.name.endswith(".sql")
    }


def sql(name: str) -> str:
    """The statement kept in `worker/db/sql/<name>.sql`; a KeyError names a missing one."""
    return _all()[name]


# `unnest($1::t[], $2::t[], ...) [WITH ORDINALITY] AS alias (col1, col2, ...)`: one array per
# column; or `unnest($1::name_row[]) ... AS alias (col1, col2, ...)`: one array of rows of a
# composite type (its name ends in `_row`), each row a tuple of the columns in the order named,
# which PostgreSQL gives the type's fields in turn (a test holds each type's fields, names and
# types, to its unnest's).
_UNNEST = re.compile(
    r"unnest\((?P<arrays>[^()]*)\)\s*(?P<ordinality>WITH\s+ORDINALITY\s+)?AS\s+\w+\s*"
    r"\((?P<columns>[^()]*)\)",
    re.IGNORECASE,
)
_PARAMETER = re.compile(r"\$(\d+)::([\w.]+)\[\]")


class Unnest(NamedTuple):
    """One unnest of a statement: the columns it fills, and the row type of its one parameter
    when that is an array of rows (None: one array per column)."""

    columns: tuple[str, ...]
    rows: str | None


@cache
def unnests(name: str) -> tuple[Unnest, ...]:
    """The unnests of statement `name`, in the order they appear: the arrays are $1..$n across
    them all, in that order, each unnest's one per column or one of rows. A ValueError says
    what is off."""
    found = _UNNEST.findall(sql(name))
    if not found:
        raise ValueError(f"{name}.sql: expected an `unnest(...) AS alias (columns)`")
    groups = []
    first = 1
    for arrays, ordinality, named in found:
        parameters = _PARAMETER.findall(arrays)
        numbers = [int(number) for number, _ in parameters]
        columns = tuple(column.strip() for column in named.split(","))
        if ordinality:
            columns = columns[:-1]  # the position column WITH ORDINALITY adds
        row_types = [kind for _, kind in parameters if kind.endswith("_row")]
        rows = row_types[0] if row_types else None
        if len(parameters) != len(arrays.split(",")):
            raise ValueError(
                f"{name}.sql: each parameter of an unnest must be cast to an array of a type "
                f"named in one word (`$1::text[]`): {arrays.strip()!r}"
            )
        if rows and len(parameters) > 1:
            raise ValueError(
                f"{name}.sql: an array of rows ({rows}) must be the only parameter of its unnest"
            )
        if numbers != list(range(first, first + len(numbers))) or (
            not rows and len(numbers) != len(columns)
        ):
            raise ValueError(
                f"{name}.sql: each unnest must take the next parameters in order (from "
                f"${first}), one per column it names, or one array of rows (a type *_row)"
            )
        first += len(numbers)
        groups.append(Unnest(columns, rows))
    return tuple(groups)


def unnest_columns(name: str) -> tuple[str, ...]:
    """The columns of statement `name`'s one unnest (`unnests`)."""
    return _one(name).columns


def _one(name: str) -> Unnest:
    found = unnests(name)
    if len(found) != 1:
        raise ValueError(f"{name}.sql: expected one `unnest(...) AS alias (columns)`")
    return found[0]


# One unnest's rows, and how to compute the columns that are not their attributes.
Group = tuple[Sequence[Any], Mapping[str, Callable[[Any], object]]]


def unnest_arrays(
    name: str, rows: Sequence[Any], /, **computed: Callable[[Any], object]
) -> list[list[object]]:
    """The array parameters of statement `name`, built by column name: each column of its
    unnest from the rows' attribute of that name, or from `computed[column](row)`; one array
    per column, or one array of rows, tuples of the columns in the order the unnest names
    them. No value is placed by position, so two columns cannot be swapped by mistake."""
    return _arrays(name, _one(name), (rows, computed))


def unnest_all(name: str, *groups: Group) -> list[list[object]]:
    """`unnest_arrays` for a statement of several unnests: one group per unnest, in order."""
    found = unnests(name)
    if len(groups) != len(found):
        raise ValueError(f"{name}.sql has {len(found)} unnests, not {len(groups)}")
    return [
        array
        for unnest, group in zip(found, groups, strict=True)
        for array in _arrays(name, unnest, group)
    ]


def _arrays(name: str, unnest: Unnest, group: Group) -> list[list[Any]]:
    rows, computed = group
    if unknown := set(computed) - set(unnest.columns):
        raise ValueError(f"{name}.sql unnests no column named {sorted(unknown)}")
    getters = [computed.get(column) or attrgetter(column) for column in unnest.columns]
    arrays = [[get(row) for row in rows] for get in getters]
    if unnest.rows:
        # One tuple per row: asyncpg checks each element of an array parameter for being an
        # array itself, a call of a few hundred nanoseconds; a row is one element, not eight.
        return [list(zip(*arrays, strict=True))]
    return arrays
