"""Named static SQL: one statement per `.sql` file in `worker/db/sql`, loaded on first use."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from operator import attrgetter
from typing import Any


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


# `unnest($1::t[], $2::t[], ...) [WITH ORDINALITY] AS alias (col1, col2, ...)`
_UNNEST = re.compile(
    r"unnest\((?P<arrays>[^()]*)\)\s*(?P<ordinality>WITH\s+ORDINALITY\s+)?AS\s+\w+\s*"
    r"\((?P<columns>[^()]*)\)",
    re.IGNORECASE,
)
_PARAMETER = re.compile(r"\$(\d+)::")


@cache
def unnest_groups(name: str) -> tuple[tuple[str, ...], ...]:
    """The columns each named unnest of statement `name` fills its array parameters into, in
    the order the unnests appear: the first array fills the first column, and so on, and the
    arrays are $1..$n across them all, in that order. A ValueError says what is off."""
    found = _UNNEST.findall(sql(name))
    if not found:
        raise ValueError(f"{name}.sql: expected an `unnest(...) AS alias (columns)`")
    groups = []
    first = 1
    for arrays, ordinality, named in found:
        numbers = [int(n) for n in _PARAMETER.findall(arrays)]
        columns = tuple(column.strip() for column in named.split(","))
        if ordinality:
            columns = columns[:-1]  # the position column WITH ORDINALITY adds
        if numbers != list(range(first, first + len(numbers))) or len(numbers) != len(columns):
            raise ValueError(
                f"{name}.sql: each unnest must take the next {len(columns)} parameters in "
                f"order (from ${first}), one per column"
            )
        first += len(numbers)
        groups.append(columns)
    return tuple(groups)


def unnest_columns(name: str) -> tuple[str, ...]:
    """The columns of statement `name`'s one unnest (`unnest_groups`)."""
    groups = unnest_groups(name)
    if len(groups) != 1:
        raise ValueError(f"{name}.sql: expected one `unnest(...) AS alias (columns)`")
    return groups[0]


# One unnest's rows, and how to compute the columns that are not their attributes.
Group = tuple[Sequence[Any], Mapping[str, Callable[[Any], object]]]


def unnest_arrays(
    name: str, rows: Sequence[Any], /, **computed: Callable[[Any], object]
) -> list[list[object]]:
    """The array parameters of statement `name`, built by column name: each column of its
    unnest from the rows' attribute of that name, or from `computed[column](row)`. No list is
    placed by position, so two columns cannot be swapped by mistake."""
    return _arrays(name, unnest_columns(name), (rows, computed))


def unnest_all(name: str, *groups: Group) -> list[list[object]]:
    """`unnest_arrays` for a statement of several unnests: one group per unnest, in order."""
    columns = unnest_groups(name)
    if len(groups) != len(columns):
        raise ValueError(f"{name}.sql has {len(columns)} unnests, not {len(groups)}")
    return [
        array
        for named, group in zip(columns, groups, strict=True)
        for array in _arrays(name, named, group)
    ]


def _arrays(name: str, columns: tuple[str, ...], group: Group) -> list[list[object]]:
    rows, computed = group
    if unknown := set(computed) - set(columns):
        raise ValueError(f"{name}.sql unnests no column named {sorted(unknown)}")
    getters = [computed.get(column) or attrgetter(column) for column in columns]
    return [[get(row) for row in rows] for get in getters]
