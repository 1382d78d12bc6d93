"""Named static SQL: one statement per `.sql` file in `worker/db/sql`, loaded on first use."""

from __future__ import annotations

from functools import cache
from importlib import resources


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
