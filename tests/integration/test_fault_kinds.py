"""Which real database faults are worth another attempt, and what a reader is told of each."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import httpx
import pytest

from worker.db.pool import open_pool
from worker.errors import fault_of, passes_by_itself
from worker.metrics import Metrics, new_registry
from worker.retry import transient_retry
from worker.sidecar.api import ReadApi
from worker.sidecar.app import Backends, create_app
from worker.sidecar.auth import TokenRules, mint_token
from worker.sidecar.cursors import Cursors

SECRET = "integration-test-secret-of-32-bytes-or-more"


async def _raised(call: asyncio.Future[object] | object) -> BaseException:
    try:
        await call  # type: ignore[misc]
    except Exception as exc:  # noqa: BLE001 - the test inspects whatever was raised
        return exc
    raise AssertionError("nothing was raised")


async def test_a_second_query_on_a_busy_connection_is_a_bug_and_is_not_retried(
    conn: asyncpg.Connection,
) -> None:
    attempts = 0

    async def overlapping() -> None:
        nonlocal attempts
        attempts += 1
        await asyncio.gather(conn.fetch("SELECT pg_sleep(0.1)"), conn.fetch("SELECT 1"))

    async def retried() -> None:
        async for attempt in transient_retry():
            with attempt:
                await overlapping()

    error = await _raised(retried())
    assert isinstance(error, asyncpg.InterfaceError)
    assert "another operation is in progress" in str(error)
    assert fault_of(error) is None
    assert attempts == 1  # raised at once: retrying would loop for ever


async def test_a_connection_the_server_ended_is_an_outage(db_url: str) -> None:
    victim, killer = await asyncpg.connect(db_url), await asyncpg.connect(db_url)
    try:
        # The timeout makes it wait until the backend is gone, so the query below cannot win.
        ended = await killer.fetchval(
            "SELECT pg_terminate_backend($1, 10000)", victim.get_server_pid()
        )
        assert ended
        error = await _raised(victim.fetch("SELECT 1"))
        assert fault_of(error) == "outage", repr(error)
        assert passes_by_itself(error)
        closed = await _raised(victim.fetch("SELECT 1"))  # the same connection, used again
        assert fault_of(closed) == "outage", repr(closed)
    finally:
        victim.terminate()
        await killer.close()


async def test_a_missing_table_waits_for_an_operator_and_a_unique_violation_is_permanent(
    conn: asyncpg.Connection,
) -> None:
    missing = await _raised(conn.fetch("SELECT * FROM no_such_table"))
    assert fault_of(missing) == "environment"
    assert not passes_by_itself(missing)
    await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY)")
    await conn.execute("INSERT INTO t VALUES (1)")
    duplicate = await _raised(conn.execute("INSERT INTO t VALUES (1)"))
    assert isinstance(duplicate, asyncpg.UniqueViolationError)
    assert fault_of(duplicate) is None


# --- what the read API answers ----------------------------------------------------------------


@pytest.fixture
async def reads(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The sidecar's app in this process, reading the test's database through its own pool."""
    pool = await open_pool(db_url, min_size=1, max_size=2, statement_timeout_ms=300)

    async def ready() -> dict[str, bool]:
        return {"database": True}

    backends: asyncio.Future[Backends] = asyncio.get_running_loop().create_future()
    backends.set_result(Backends(ready, ReadApi(pool, Cursors(b"k" * 32))))
    app = create_app(backends, Metrics(new_registry()), TokenRules((SECRET,)))
    token = mint_token(SECRET, "ops", "admin", timedelta(minutes=5))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://sidecar",
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client
    await pool.close()


async def test_a_read_the_database_cannot_answer_in_time_is_503_try_again(
    reads: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    async with conn.transaction():
        await conn.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
        response = await reads.get("/api/v1/payments/pay-1")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"


async def test_an_sql_fault_of_the_service_is_500_not_an_outage(
    reads: httpx.AsyncClient, conn: asyncpg.Connection
) -> None:
    assert (await reads.get("/api/v1/payments/pay-1")).status_code == 404
    await conn.execute("DROP TABLE payment_transitions, payments CASCADE")
    response = await reads.get("/api/v1/payments/pay-1")
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    assert response.json() == {"detail": "internal error"}
