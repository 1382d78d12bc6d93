"""No statement the worker ships leaves state in a database session past its transaction.

Pooled connections go back without asyncpg's reset query (worker.db.pool): a session lock, a
plain `SET` or a `LISTEN` would stay on the connection for whichever batch takes it next. The
provider calls' session locks are the one exception, on a connection of their own."""

from __future__ import annotations

import re
from importlib import resources

import pytest

# The provider calls' locks (worker.gateway_calls): their own connection, never a pooled one.
ALLOWED = {"worker.db.sql/gateway_calls_try_lock.sql": ["a session advisory lock"]}

# What outlives a transaction. A SET statement must be SET LOCAL (UPDATE ... SET and
# ALTER ... SET are not statements of their own, so they are not matched).
SESSION_STATE = {
    "a session advisory lock": r"\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(",
    "SET without LOCAL": r"(?:\A|;)\s*SET\s+(?!LOCAL\b)",
    "set_config for the session": r"\bset_config\s*\([^;]*,\s*false\s*\)",
    "RESET": r"(?:\A|;)\s*RESET\b",
    "LISTEN": r"\bLISTEN\b",
    "a cursor WITH HOLD": r"\bWITH\s+HOLD\b",
    "a temporary table": r"\bCREATE\s+(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\b",
    "a named prepared statement": r"(?:\A|;)\s*PREPARE\s+(?!TRANSACTION\b)",
}


def _shipped() -> list[object]:
    files = []
    for package in ("worker.db.sql", "worker.db.migrations"):
        for entry in resources.files(package).iterdir():
            if entry.name.endswith(".sql"):
                name = f"{package}/{entry.name}"
                files.append(pytest.param(name, entry.read_text("utf-8"), id=entry.name))
    return files


def _statements(text: str) -> str:
    """The text without comments or string literals, whose words are not statements."""
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


def session_state(text: str) -> list[str]:
    """What in `text` would outlive its transaction."""
    body = _statements(text)
    return [
        what for what, pattern in SESSION_STATE.items() if re.search(pattern, body, re.IGNORECASE)
    ]


@pytest.mark.parametrize(("name", "text"), _shipped())
def test_no_shipped_statement_leaves_state_in_the_session(name: str, text: str) -> None:
    assert session_state(text) == ALLOWED.get(name, []), name


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("SET lock_timeout = '1s';", ["SET without LOCAL"]),
        ("CREATE INDEX i ON t (c);\nset search_path TO x;", ["SET without LOCAL"]),
        ("SET SESSION statement_timeout = 0", ["SET without LOCAL"]),
        ("SELECT set_config('a.b', 'c', false)", ["set_config for the session"]),
        ("RESET ALL", ["RESET"]),
        ("LISTEN payments", ["LISTEN"]),
        ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", ["a cursor WITH HOLD"]),
        ("CREATE TEMP TABLE t (n int)", ["a temporary table"]),
        ("PREPARE q AS SELECT 1", ["a named prepared statement"]),
        ("SELECT pg_advisory_lock(1)", ["a session advisory lock"]),
        ("SELECT pg_try_advisory_lock_shared(1, 2)", ["a session advisory lock"]),
        # What is not session state:
        ("SET LOCAL lock_timeout = '1s'", []),
        ("SELECT set_config('a.b', 'c', true)", []),
        ("UPDATE t SET n = 1", []),
        ("INSERT INTO t VALUES (1) ON CONFLICT (n) DO UPDATE\nSET n = 2", []),
        ("ALTER TABLE t ALTER COLUMN n SET DEFAULT 0", []),
        ("SELECT pg_advisory_xact_lock(1); SELECT pg_try_advisory_xact_lock(2)", []),
        ("UNLISTEN *", []),
        ("PREPARE TRANSACTION 'x'", []),
        ("-- SET this and LISTEN to that\nSELECT 'SET x = 1'", []),
    ],
)
def test_what_counts_as_session_state(text: str, found: list[str]) -> None:
    assert session_state(text) == found
