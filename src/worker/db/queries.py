"""Named static SQL: one statement per `.sql` file in `worker/db/sql`, loaded on first use."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
def unnest_columns(name: str) -> tuple[str, ...]:
    """The columns statement `name` unnests its array parameters into, as its SQL names them:
    the first parameter fills the first column, and so on. Exactly one named unnest of $1..$n,
    with one name per array, or a ValueError says what is off."""
    found = _UNNEST.findall(sql(name))
    if len(found) != 1:
        raise ValueError(f"{name}.sql: expected one `unnest(...) AS alias (columns)`")
    arrays, ordinality, named = found[0]
    numbers = [int(n) for n in _PARAMETER.findall(arrays)]
    columns = tuple(column.strip() for column in named.split(","))
    if ordinality:
        columns = columns[:-1]  # the position column WITH ORDINALITY adds
    if numbers != list(range(1, len(numbers) + 1)) or len(numbers) != len(columns):
        raise ValueError(f"{name}.sql: unnest must take $1..$n for its {len(columns)} columns")
    return columns


def unnest_arrays(
    name: str, rows: Sequence[Any], /, **computed: Callable[[Any], object]
) -> list[list[object]]:
    """The array parameters of statement `name`, built by column name: each column of its
    unnest from the rows' attribute of that name, or from `computed[column](row)`. No list is
    placed by position, so two columns cannot be swapped by mistake."""
    columns = unnest_columns(name)
    if unknown := set(computed) - set(columns):
        raise ValueError(f"{name}.sql unnests no column named {sorted(unknown)}")
    getters = [computed.get(column) or attrgetter(column) for column in columns]
    return [[get(row) for row in rows] for get in getters]
