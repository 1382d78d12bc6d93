"""What a pooled connection sends the server as it goes back to the pool."""

from __future__ import annotations

import asyncpg

from worker.db.pool import open_pool


async def _last_statement(observer: asyncpg.Connection, pid: int) -> tuple[str, str]:
    """The last statement the backend `pid` ran, as the server saw it, and its state now."""
    row = await observer.fetchrow("SELECT query, state FROM pg_stat_activity WHERE pid = $1", pid)
    assert row is not None
    return row["query"], row["state"]


async def test_a_connection_goes_back_to_the_pool_with_no_statement_after_its_own(
    db_url: str, conn: asyncpg.Connection
) -> None:
    # asyncpg's reset query would be one more round trip after every batch's transaction.
    pool = await open_pool(db_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as pooled, pooled.transaction():
            await pooled.execute("SELECT 1")
            pid = pooled.get_server_pid()
        assert await _last_statement(conn, pid) == ("COMMIT;", "idle")

        async with pool.acquire() as pooled:
            await pooled.execute("SELECT 2")
            assert pooled.get_server_pid() == pid
        assert await _last_statement(conn, pid) == ("SELECT 2", "idle")
    finally:
        await pool.close()


async def test_a_transaction_left_open_is_still_rolled_back_on_release(
    db_url: str, conn: asyncpg.Connection
) -> None:
    pool = await open_pool(db_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as pooled:
            await pooled.execute("BEGIN")  # not managed: a caller that never ended it
            await pooled.execute("SELECT 3")
            pid = pooled.get_server_pid()
        assert await _last_statement(conn, pid) == ("ROLLBACK", "idle")
    finally:
        await pool.close()
