"""Connection pools to PostgreSQL, opened with the transient-fault policy."""

from __future__ import annotations

import asyncpg

from worker.retry import transient_retry


async def open_pool(
    dsn: str,
    *,
    min_size: int,
    max_size: int,
    statement_timeout_ms: int | None = None,
    read_only: bool = False,
    name: str = "payment-worker",
) -> asyncpg.Pool:
    """A pool that waits for the database to come up instead of failing the start."""
    server_settings = {"application_name": name}
    if statement_timeout_ms is not None:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    async for attempt in transient_retry():
        with attempt:
            pool: asyncpg.Pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                server_settings=server_settings,
                command_timeout=60,
                reset=_keep_session,
            )
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's reset query (advisory unlock, `CLOSE ALL`,
    `UNLISTEN *`, `RESET ALL`): one round trip after every release: a batch's transaction,
    and the relay's after a batch that queued results in the outbox.

    Nothing here leaves session state on a pooled connection: its settings are given at connect
    (`server_settings`), advisory locks are transaction-scoped but for the provider calls', which
    hold their own connection (`worker.gateway_calls`), and nothing listens or holds a cursor.
    tests/unit/test_session_state.py holds the SQL files and migrations to that; the worker
    resets the connection that applied the migrations. asyncpg still rolls back a transaction
    left open before it calls this."""
