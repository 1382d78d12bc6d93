"""The gateway-calls task against the real PostgreSQL: each queued call made once, outside any
transaction, its answer written; passing failures put off, refusals final, nothing stops it.

The gateway here is a stand-in of the worker's own interface: what is under test is the queue,
its locks and what is written. The providers' SDKs are tested in test_gateways.py and end to end.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from worker.core.gateway import (
    GatewayRefusal,
    GatewayUnavailable,
    RefundReceipt,
    RefundRequest,
    Session,
    SessionRequest,
)
from worker.core.payments import OpenPayment, PaymentDefaults
from worker.core.types import Provider
from worker.db.payments import apply_payment_commands, expire_due
from worker.gateway_calls import GatewayCaller
from worker.metrics import Metrics


class Provider_:
    """Answers sessions after `delay`, or raises what it is told to; counts every call."""

    provider: Provider = "stripe"

    def __init__(self, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: Counter[str] = Counter()

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return wanted

    async def open_session(self, request: SessionRequest) -> Session:
        self.calls[request.payment_id] += 1
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        ppid = f"cs_{request.payment_id}"
        return Session(ppid, f"https://checkout.test/{ppid}", request.expires_at)

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        raise NotImplementedError


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


async def request_payments(pool: asyncpg.Pool, *pids: str, ttl: float = 30) -> None:
    commands = [
        OpenPayment(p, "stu-1", "c-1", 49900, "INR", None, f"e-{p}", "payment.requested", "t")
        for p in pids
    ]
    defaults = PaymentDefaults("stripe", timedelta(minutes=ttl))
    async with pool.acquire() as conn, conn.transaction():
        await apply_payment_commands(conn, commands, defaults, datetime.now(UTC))


def caller(pool: asyncpg.Pool, db_url: str, gateway: Provider_, metrics: Metrics) -> GatewayCaller:
    return GatewayCaller(
        pool,
        lambda: asyncpg.connect(db_url),
        {"stripe": gateway},
        metrics,
        timeout_seconds=30,
        concurrency=4,
    )


async def drain(*callers: GatewayCaller) -> None:
    try:
        await asyncio.gather(*(c.drain() for c in callers))
    finally:
        for c in callers:
            await c.close()


async def test_two_workers_make_each_queued_call_once(pool: asyncpg.Pool, db_url: str) -> None:
    pids = [f"pay-{i}" for i in range(12)]
    await request_payments(pool, *pids)
    both_calling = asyncio.Event()

    class Meeting(Provider_):
        """Holds its calls until both workers are making one: each worker claims only as
        many calls as it has room for, so the other one finds the rest."""

        async def open_session(self, request: SessionRequest) -> Session:
            self.calls[request.payment_id] += 1
            if all(gateway.calls for gateway in gateways):
                both_calling.set()
            await both_calling.wait()
            ppid = f"cs_{request.payment_id}"
            return Session(ppid, f"https://checkout.test/{ppid}", request.expires_at)

    gateways = [Meeting(), Meeting()]
    metrics = Metrics(CollectorRegistry())
    await drain(*(caller(pool, db_url, gateway, metrics) for gateway in gateways))
    assert gateways[0].calls + gateways[1].calls == Counter(pids)  # every call once
    assert all(gateway.calls for gateway in gateways)  # and both workers made some
    opened = await pool.fetchval("SELECT count(*) FROM payments WHERE payment_url IS NOT NULL")
    assert opened == 12
    assert await pool.fetchval("SELECT count(*) FROM gateway_calls") == 0
    created = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'payment.session.created'"
    )
    assert created == 12


async def test_a_request_replayed_while_its_call_was_pending_gets_the_same_answer(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    await request_payments(pool, "pay-1")  # a replay (another event id) before the session
    gateway = Provider_()
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    assert gateway.calls["pay-1"] == 1
    answers = await pool.fetch("SELECT value FROM outbox WHERE topic = 'payment.session.created'")
    assert len(answers) == 2
    assert answers[0]["value"] == answers[1]["value"]  # the same result, byte for byte


async def test_an_answer_got_by_an_attempt_that_lost_its_call_is_not_written(
    pool: asyncpg.Pool, db_url: str
) -> None:
    """Fencing: worker A's lock connection dies mid-call and B makes the call again; A's late
    answer must not be written over the attempt B owns."""
    await request_payments(pool, "pay-1")
    started_b = asyncio.Event()

    class Slow(Provider_):
        async def open_session(self, request: SessionRequest) -> Session:
            self.calls[request.payment_id] += 1
            await started_b.wait()  # A answers only once B has started its own attempt
            return Session("cs_from_a", "https://checkout.test/a", request.expires_at)

    a = caller(pool, db_url, Slow(), Metrics(CollectorRegistry()))
    draining = asyncio.create_task(a.drain())
    await eventually_started(pool)
    await a.close()  # A's locks are gone with its connection
    b_gateway = Provider_()
    b = caller(pool, db_url, b_gateway, Metrics(CollectorRegistry()))
    await drain(b)  # B claims and settles the call (a later attempt)
    started_b.set()
    await draining
    assert b_gateway.calls["pay-1"] == 1
    assert await pool.fetchval("SELECT provider_payment_id FROM payments") == "cs_pay-1"
    created = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'payment.session.created'"
    )
    assert created == 1


async def eventually_started(pool: asyncpg.Pool) -> None:
    for _ in range(200):
        if await pool.fetchval("SELECT attempts FROM gateway_calls") == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the call was never started")


async def test_replays_waiting_for_a_call_dropped_with_its_closed_payment_get_its_status(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    await request_payments(pool, "pay-1")  # a replay, owed the answer
    async with pool.acquire() as conn, conn.transaction():
        await expire_due(conn, datetime.now(UTC) + timedelta(hours=1), 10)
    gateway = Provider_()
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    assert not gateway.calls
    topics = [r["topic"] for r in await pool.fetch("SELECT topic FROM outbox ORDER BY seq")]
    assert topics == ["payment.expired", "payment.expired"]  # the sweep's, and the replay's


async def test_a_provider_that_stays_unavailable_puts_the_call_off(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    gateway = Provider_(fail=GatewayUnavailable("stripe: 503"))
    metrics = Metrics(CollectorRegistry())
    before = datetime.now(UTC)
    await drain(caller(pool, db_url, gateway, metrics))
    assert gateway.calls["pay-1"] == 3  # the policy's attempts, then off to the database
    row = await pool.fetchrow("SELECT * FROM gateway_calls")
    assert row["attempts"] == 1
    assert row["not_before"] > before
    assert row["last_error"] == "stripe: 503"
    assert await pool.fetchval("SELECT status FROM payments") == "initiated"
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    unavailable = metrics.registry.get_sample_value(
        "payment_worker_gateway_calls_total",
        {"provider": "stripe", "kind": "session", "outcome": "unavailable"},
    )
    assert unavailable == 1
    # Later the provider is back, and the call is made again and settled.
    await pool.execute("UPDATE gateway_calls SET not_before = now()")
    gateway.fail = None
    await drain(caller(pool, db_url, gateway, metrics))
    assert (
        await pool.fetchval("SELECT payment_url FROM payments") == "https://checkout.test/cs_pay-1"
    )


async def test_a_long_retry_after_is_honoured_without_waiting_in_the_worker(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    gateway = Provider_(fail=GatewayUnavailable("stripe: 429", retry_after=120))
    before = datetime.now(UTC)
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    assert gateway.calls["pay-1"] == 1
    not_before = await pool.fetchval("SELECT not_before FROM gateway_calls")
    assert not_before >= before + timedelta(seconds=120)


async def test_a_refusal_fails_the_payment_with_the_providers_reason(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    gateway = Provider_(fail=GatewayRefusal("stripe: Invalid currency: inr"))
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    row = await pool.fetchrow("SELECT status, status_reason FROM payments")
    assert tuple(row) == ("failed", "stripe: Invalid currency: inr")
    value = await pool.fetchval("SELECT value FROM outbox WHERE topic = 'payment.failed'")
    assert json.loads(value)["data"]["reason"] == "stripe: Invalid currency: inr"
    assert await pool.fetchval("SELECT count(*) FROM gateway_calls") == 0


async def test_a_payment_closed_before_its_session_opened_is_not_asked_for(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1")
    await pool.execute("UPDATE payments SET status = 'expired'")
    gateway = Provider_()
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    assert not gateway.calls
    assert await pool.fetchval("SELECT count(*) FROM gateway_calls") == 0


async def test_an_unexpected_failure_of_one_call_is_put_off_and_the_others_go_on(
    pool: asyncpg.Pool, db_url: str
) -> None:
    await request_payments(pool, "pay-1", "pay-2")

    class Broken(Provider_):
        async def open_session(self, request: SessionRequest) -> Session:
            if request.payment_id == "pay-1":
                raise RuntimeError("a bug in an adapter")
            return await super().open_session(request)

    gateway = Broken()
    await drain(caller(pool, db_url, gateway, Metrics(CollectorRegistry())))
    statuses = dict(await pool.fetch("SELECT payment_id, payment_url IS NOT NULL FROM payments"))
    assert statuses == {"pay-1": False, "pay-2": True}
    row = await pool.fetchrow("SELECT reference_id, not_before FROM gateway_calls")
    assert row["reference_id"] == "pay-1"
    assert row["not_before"] > datetime.now(UTC)
