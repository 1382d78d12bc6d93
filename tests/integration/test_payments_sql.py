"""The payments adapter against the real PostgreSQL: writes, locks, sweeps and races."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from tests.support import eventually, waits_on_a_lock
from worker.core.coins import CoinCommand
from worker.core.commands import command_for
from worker.core.gateway import (
    Gateway,
    RefundReceipt,
    RefundRequest,
    Session,
    SessionRequest,
)
from worker.core.handlers import Policies, Rewards
from worker.core.payments import (
    OpenPayment,
    PaymentCommand,
    PaymentDefaults,
    PaymentPlan,
    RefundPayment,
    RefuseWebhook,
    event_of,
)
from worker.core.signatures import WebhookVerifier, razorpay_signature, stripe_signature
from worker.core.types import Provider
from worker.db.answers import answer_id
from worker.db.payments import apply_payment_commands, expire_due, write_payment_plan
from worker.errors import ConcurrentWriteError, PermanentError, is_retriable
from worker.expiry import PAYMENTS, Sweeper
from worker.gateway_calls import GatewayCaller
from worker.gateways.mock import MockGateway
from worker.metrics import Metrics

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SECRET = "whsec_integration"
POLICIES = Policies(
    Rewards(100, 50, 1_000_000),
    WebhookVerifier({"mock": SECRET.encode(), "stripe": SECRET.encode(), "razorpay": b"rzp"}),
)
MOCK = MockGateway("https://pay.test/checkout")


class ProviderGateway:
    """Opens sessions with ids as another provider's look (the SQL is what is under test here;
    the real providers' SDKs are tested against their servers in tests/e2e/test_gateways.py)."""

    def __init__(self, provider: Provider) -> None:
        self.provider: Provider = provider
        self.refunds: list[str] = []

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return wanted

    async def open_session(self, request: SessionRequest) -> Session:
        ppid = f"{self.provider}_{request.payment_id}"
        return Session(ppid, f"https://{self.provider}.test/{ppid}", request.expires_at)

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        self.refunds.append(request.refund_id)
        return RefundReceipt(f"re_{request.refund_id}")


# The database of each test's pool, for the gateway caller's own connection.
_DATABASES: dict[int, str] = {}


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=6)
    _DATABASES[id(pool)] = db_url
    yield pool
    del _DATABASES[id(pool)]
    await pool.close()


def requested(pid: str, student: str = "stu-1", amount: int = 49900) -> OpenPayment:
    return OpenPayment(
        pid, student, "course-1", amount, "INR", None, f"evt-{pid}", "payment.requested", "t"
    )


def webhook(
    provider: str, body: dict[str, Any], *, signed_at: datetime = NOW, delivery: str = ""
) -> PaymentCommand:
    """A signed `payment.webhook.received` event, through the real handler. Its CloudEvent id
    follows the body and `delivery` (another delivery of one notification: a new CloudEvent)."""
    raw = json.dumps(body)
    if provider == "razorpay":
        digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
        headers = {"X-Razorpay-Signature": razorpay_signature(raw, "rzp"),
                   "X-Razorpay-Event-Id": f"rzp_evt_{digest}"}  # fmt: skip
    else:
        headers = {"Stripe-Signature": stripe_signature(raw, SECRET, int(signed_at.timestamp()))}
    event = {
        "specversion": "1.0", "id": "evt-" + hashlib.sha256(raw.encode()).hexdigest() + delivery,
        "type": "payment.webhook.received", "source": "ingress", "time": NOW.isoformat(),
        "subject": _reported(provider, body), "datacontenttype": "application/json",
        "data": {"provider": provider, "headers": headers, "body": raw},
    }  # fmt: skip
    command = command_for(
        "payment.webhook.received",
        event["subject"].encode(),
        json.dumps(event).encode(),
        (),
        POLICIES,
    )
    assert not isinstance(command, CoinCommand)
    return command


def _reported(provider: str, body: dict[str, Any]) -> str:
    """The provider payment id a webhook body reports on: the event's key and subject."""
    if provider == "mock":
        return str(body["data"]["provider_payment_id"])
    if provider == "stripe":
        return str(body["data"]["object"]["id"])
    return str(body["payload"]["payment"]["entity"]["id"])


def mock_event(kind: str, ppid: str, amount: int = 49900, currency: str = "INR") -> dict[str, Any]:
    data = {"provider_payment_id": ppid, "amount": amount, "currency": currency}
    return {"id": f"ntf-{kind}-{ppid}", "type": kind, "data": data}


def stripe_event(kind: str, intent: str, amount: int = 49900) -> dict[str, Any]:
    return {
        "id": f"evt_{kind}", "object": "event", "type": kind,
        "data": {"object": {"id": intent, "object": "payment_intent", "amount": amount,
                            "amount_received": amount, "status": "succeeded",
                            "currency": "inr"}},
    }  # fmt: skip


def razorpay_event(kind: str, payment: str, amount: int = 49900) -> dict[str, Any]:
    return {
        "entity": "event", "event": kind, "contains": ["payment"],
        "payload": {"payment": {"entity": {"id": payment, "amount": amount, "currency": "INR"}}},
    }  # fmt: skip


def defaults(gateway: Gateway) -> PaymentDefaults:
    return PaymentDefaults(gateway.provider, timedelta(minutes=30))


async def apply(
    pool: asyncpg.Pool, commands: list[PaymentCommand], gateway: Any = MOCK, now: datetime = NOW
) -> PaymentPlan:
    """One batch's transaction (its results queued), then the provider calls it queued, made and
    settled."""
    async with pool.acquire() as conn, conn.transaction():
        plan = await apply_payment_commands(conn, commands, defaults(gateway), now)
    if plan.calls:
        await make_calls(pool, gateway)
    return plan


async def make_calls(pool: asyncpg.Pool, gateway: Gateway) -> None:
    caller = GatewayCaller(
        pool,
        lambda: asyncpg.connect(_DATABASES[id(pool)]),
        {gateway.provider: gateway},
        Metrics(CollectorRegistry()),
        timeout_seconds=5,
        concurrency=4,
        clock=lambda: NOW,
    )
    try:
        await caller.drain()
    finally:
        await caller.close()


async def provider_id(pool: asyncpg.Pool, pid: str) -> str:
    value: str = await pool.fetchval(
        "SELECT provider_payment_id FROM payments WHERE payment_id = $1", pid
    )
    return value


async def status(pool: asyncpg.Pool, pid: str) -> str:
    value: str = await pool.fetchval("SELECT status FROM payments WHERE payment_id = $1", pid)
    return value


async def transitions(pool: asyncpg.Pool, pid: str) -> list[tuple[str | None, str]]:
    rows = await pool.fetch(
        "SELECT from_status, status FROM payment_transitions WHERE payment_id = $1"
        " ORDER BY created_at, status",
        pid,
    )
    return [(r["from_status"], r["status"]) for r in rows]


async def test_a_payment_is_opened_paid_and_refunded_with_every_step_recorded(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    row = await pool.fetchrow("SELECT * FROM payments WHERE payment_id = 'pay-1'")
    assert row["status"] == "initiated"
    assert row["payment_url"] == f"https://pay.test/checkout/{ppid}"
    assert row["expires_at"] == NOW + timedelta(minutes=30)

    succeeded = mock_event("payment.succeeded", ppid, currency="inr")
    await apply(pool, [webhook("mock", succeeded)])
    refund = RefundPayment(
        "rf-1",
        "pay-1",
        "duplicate",
        "staff-1",
        True,
        "evt-rf",
        "payment.refund.requested",
        "stu-1",
        "t",
    )
    await apply(pool, [refund])
    assert await status(pool, "pay-1") == "refunded"
    assert await transitions(pool, "pay-1") == [
        (None, "initiated"), ("initiated", "succeeded"), ("succeeded", "refunded"),
    ]  # fmt: skip
    refunds = await pool.fetch("SELECT refund_id, outcome FROM payment_refunds")
    assert [tuple(r) for r in refunds] == [("rf-1", "applied")]
    topics = [r["topic"] for r in await pool.fetch("SELECT topic FROM outbox ORDER BY seq")]
    assert topics == ["payment.session.created", "payment.confirmed", "payment.refunded"]


async def test_replays_write_nothing_and_queue_the_stored_result_again(pool: asyncpg.Pool) -> None:
    await apply(pool, [requested("pay-1")])
    first = await pool.fetchval("SELECT value FROM outbox WHERE topic = 'payment.session.created'")
    replay = await apply(pool, [requested("pay-1")], now=NOW + timedelta(minutes=5))
    assert [m.value for m in replay.messages] == [first]
    # Queued again, though nothing else is written (payments_write runs for the outbox alone).
    queued = await pool.fetch("SELECT value FROM outbox WHERE topic = 'payment.session.created'")
    assert [row["value"] for row in queued] == [first, first]
    assert not replay.calls
    assert await pool.fetchval("SELECT count(*) FROM payments") == 1
    assert await pool.fetchval("SELECT count(*) FROM payment_transitions") == 1


@pytest.mark.parametrize(
    ("provider", "paid", "failed"),
    [
        ("stripe", "payment_intent.succeeded", "payment_intent.payment_failed"),
        ("razorpay", "payment.captured", "payment.failed"),
    ],
)
async def test_stripe_and_razorpay_webhooks_move_their_own_payments(
    pool: asyncpg.Pool, provider: Provider, paid: str, failed: str
) -> None:
    gateway = ProviderGateway(provider)
    await apply(pool, [requested("pay-a"), requested("pay-b")], gateway)
    event = stripe_event if provider == "stripe" else razorpay_event
    plan = await apply(
        pool,
        [
            webhook(provider, event(paid, f"{provider}_pay-a")),
            webhook(provider, event(failed, f"{provider}_pay-b")),
            webhook(provider, event(paid, f"{provider}_pay-c")),
            webhook(provider, event(paid, f"{provider}_pay-b", amount=1)),
        ],
        gateway,
    )
    assert await status(pool, "pay-a") == "succeeded"
    # A failed attempt leaves the payment open for another try, its reason on record.
    assert await status(pool, "pay-b") == "initiated"
    reason = await pool.fetchval("SELECT status_reason FROM payments WHERE payment_id = 'pay-b'")
    assert reason == "a payment attempt failed; the student may try again"
    assert plan.webhook_refusals == [(provider, "unknown_payment"), (provider, "amount_mismatch")]
    # A mock webhook naming the same provider payment id moves nothing: another provider's.
    mock_body = mock_event("payment.succeeded", f"{provider}_pay-b")
    crossed = await apply(pool, [webhook("mock", mock_body)], gateway)
    assert crossed.webhook_refusals == [("mock", "unknown_payment")]
    assert await status(pool, "pay-b") == "initiated"


async def test_a_late_success_after_expiry_wins(pool: asyncpg.Pool) -> None:
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    async with pool.acquire() as conn, conn.transaction():
        expired = await expire_due(conn, NOW + timedelta(minutes=31), 100)
    assert list(expired.changed) == ["pay-1"]
    body = mock_event("payment.succeeded", ppid)
    plan = await apply(pool, [webhook("mock", body)])
    assert [t.from_status for t in plan.late_successes] == ["expired"]
    assert await transitions(pool, "pay-1") == [
        (None, "initiated"), ("initiated", "expired"), ("expired", "succeeded"),
    ]  # fmt: skip


async def test_concurrent_sweeps_expire_each_payment_exactly_once(pool: asyncpg.Pool) -> None:
    await apply(pool, [requested(f"pay-{i:03}") for i in range(300)])
    await apply(pool, [requested("pay-fresh")], now=NOW + timedelta(hours=1))
    later = NOW + timedelta(minutes=45)

    async def sweep() -> int:
        expired = 0
        while True:
            async with pool.acquire() as conn, conn.transaction():
                plan = await expire_due(conn, later, 25)
                await asyncio.sleep(0.01)  # hold the locks a moment, as a real batch would
            expired += len(plan.transitions)
            if not plan.transitions:
                return expired

    counts = await asyncio.gather(*(sweep() for _ in range(4)))
    assert sum(counts) == 300
    assert sum(1 for c in counts if c) >= 2  # the sweeps did share the work
    expired = await pool.fetch("SELECT value FROM outbox WHERE topic = 'payment.expired'")
    ids = [json.loads(r["value"])["id"] for r in expired]
    assert len(ids) == len(set(ids)) == 300
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE status = 'expired'") == 300
    assert await status(pool, "pay-fresh") == "initiated"


async def test_a_sweep_leaves_a_payment_a_batch_holds_and_the_batch_wins(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    body = mock_event("payment.succeeded", ppid)
    later = NOW + timedelta(minutes=31)
    async with pool.acquire() as batch, batch.transaction():
        await apply_payment_commands(batch, [webhook("mock", body)], defaults(MOCK), later)
        async with pool.acquire() as conn, conn.transaction():
            skipped = await expire_due(conn, later, 100)
        assert not skipped.transitions
    async with pool.acquire() as conn, conn.transaction():
        assert not (await expire_due(conn, later, 100)).transitions
    assert await status(pool, "pay-1") == "succeeded"


async def test_a_payment_opened_by_two_workers_at_once_retries_the_slower(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as first, pool.acquire() as second:
        async with first.transaction():
            await apply_payment_commands(first, [requested("pay-1")], defaults(MOCK), NOW)
            slower = asyncio.create_task(_open_in(second, requested("pay-1", student="stu-2")))
            await eventually(lambda: waits_on_a_lock(pool, second), within=10)
        with pytest.raises(ConcurrentWriteError) as raised:
            await slower
    assert is_retriable(raised.value)
    # The retry sees the first payment and answers a conflict.
    retried = await apply(pool, [requested("pay-1", student="stu-2")])
    assert json.loads(retried.messages[0].value or b"")["data"]["reason"] == (
        "idempotency_conflict"
    )


async def test_a_failed_attempt_in_the_batch_that_opens_the_payment_keeps_its_reason(
    pool: asyncpg.Pool,
) -> None:
    """The payment is opened and updated in one statement, where the update could not see it."""
    declined = {
        "id": "evt_declined", "object": "event", "type": "payment_intent.payment_failed",
        "data": {"object": {"id": "pi_early", "object": "payment_intent", "amount": 49900,
                            "currency": "inr", "metadata": {"payment_id": "pay-1"},
                            "last_payment_error": {"message": "Your card was declined."}}},
    }  # fmt: skip
    plan = await apply(
        pool, [requested("pay-1"), webhook("stripe", declined)], ProviderGateway("stripe")
    )
    assert plan.outcomes[-1] == ("payment.webhook.received", "applied")
    row = await pool.fetchrow("SELECT status, status_reason FROM payments")
    assert tuple(row) == ("initiated", "Your card was declined.")


async def test_a_success_replayed_with_the_request_that_opens_the_payment_keeps_its_money(
    pool: asyncpg.Pool,
) -> None:
    """A success in the batch that opens the payment (its events replayed together, say after
    a restore): the captured money is named on the row, for a refund to name it later."""
    paid = {
        "id": "evt_paid", "object": "event", "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_early", "object": "payment_intent", "amount": 49900,
                            "amount_received": 49900, "status": "succeeded", "currency": "inr",
                            "metadata": {"payment_id": "pay-1"}}},
    }  # fmt: skip
    plan = await apply(
        pool, [requested("pay-1"), webhook("stripe", paid)], ProviderGateway("stripe")
    )
    assert plan.outcomes[-1] == ("payment.webhook.received", "applied")
    row = await pool.fetchrow("SELECT status, captured_id FROM payments")
    assert tuple(row) == ("succeeded", "pi_early")


async def test_a_change_to_a_payment_that_does_not_exist_fails_for_good(
    pool: asyncpg.Pool,
) -> None:
    plan = await apply(pool, [requested("pay-1")])
    ghost = dataclasses.replace(plan.created["pay-1"], payment_id="pay-ghost")
    async with pool.acquire() as conn, conn.transaction():
        with pytest.raises(PermanentError, match="does not exist"):
            await write_payment_plan(conn, PaymentPlan(changed={"pay-ghost": ghost}), NOW)


async def test_a_move_whose_status_is_recorded_already_fails_for_good_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    """The payment is locked, so no other worker can have recorded the status meanwhile: the
    stored payment and its transitions disagree, and retrying cannot cure that."""
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    await pool.execute(
        "INSERT INTO payment_transitions (payment_id, status, from_status, result_topic,"
        " result_key, result_value) VALUES ('pay-1', 'succeeded', 'initiated', 't', '', '')"
    )
    with pytest.raises(PermanentError) as raised:
        await apply(pool, [webhook("mock", mock_event("payment.succeeded", ppid))])
    assert not is_retriable(raised.value)
    assert await status(pool, "pay-1") == "initiated"


async def test_an_answer_another_worker_keeps_meanwhile_retries_the_batch(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [requested("pay-1")])
    clash = requested("pay-1", student="stu-2")  # refused, and the refusal kept as its answer
    async with pool.acquire() as other, pool.acquire() as conn:
        async with other.transaction():
            await other.execute(
                "INSERT INTO event_answers (answer_id, event_type, event_source, event_id,"
                " result_topic, result_key, result_value) VALUES ($1, $2, $3, $4, 't', '', '')",
                answer_id(event_of(clash)),
                *event_of(clash),
            )
            slower = asyncio.create_task(_open_in(conn, clash))
            await eventually(lambda: waits_on_a_lock(pool, conn), within=10)
        with pytest.raises(ConcurrentWriteError):
            await slower


async def _open_in(conn: Any, command: OpenPayment) -> None:
    async with conn.transaction():
        await apply_payment_commands(conn, [command], defaults(MOCK), NOW)


async def test_a_webhook_delivered_again_after_later_moves_repeats_its_result(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    failed = webhook("mock", mock_event("payment.failed", ppid))
    first = await apply(pool, [failed, webhook("mock", mock_event("payment.succeeded", ppid))])
    again = await apply(pool, [failed])  # the same CloudEvent, after a crash before its offset
    assert again.messages == [first.messages[0]]
    assert not again.webhook_refusals
    assert await status(pool, "pay-1") == "succeeded"


@pytest.mark.parametrize(
    ("provider", "closing"),
    [("mock", "payment.failed"), ("stripe", "payment_intent.canceled")],
)
async def test_a_providers_retry_in_a_new_event_repeats_its_result_after_later_moves(
    pool: asyncpg.Pool, provider: Provider, closing: str
) -> None:
    """The provider sends a notification again (its retry, or captured bytes replayed within
    the tolerance) in a new CloudEvent: recognised by the provider's event id, it repeats its
    first result and changes nothing, though the payment has moved on since."""
    gateway = ProviderGateway(provider) if provider != "mock" else MOCK
    await apply(pool, [requested("pay-1")], gateway)
    ppid = await provider_id(pool, "pay-1")
    if provider == "mock":
        closed, paid = mock_event(closing, ppid), mock_event("payment.succeeded", ppid)
    else:
        closed, paid = stripe_event(closing, ppid), stripe_event("payment_intent.succeeded", ppid)
    first = await apply(pool, [webhook(provider, closed), webhook(provider, paid)], gateway)
    assert await status(pool, "pay-1") == "succeeded"  # a late success: the provider wins
    retried = await apply(pool, [webhook(provider, closed, delivery="-retry")], gateway)
    assert retried.messages == [first.messages[0]]
    assert retried.outcomes == [("payment.webhook.received", "duplicate")]
    assert not retried.webhook_refusals
    assert not retried.transitions
    assert await status(pool, "pay-1") == "succeeded"


async def test_a_webhook_event_in_a_new_record_judged_stale_repeats_its_first_move(
    pool: asyncpg.Pool,
) -> None:
    """The same CloudEvent re-sent long after: its signature is now stale against the new
    record's time, but the move it made is found by its id and repeated."""
    await apply(pool, [requested("pay-1")])
    ppid = await provider_id(pool, "pay-1")
    body = mock_event("payment.succeeded", ppid)
    first = await apply(pool, [webhook("mock", body)])
    late = webhook("mock", body, signed_at=NOW - timedelta(hours=1))  # same body, same event id
    assert isinstance(late, RefuseWebhook)
    again = await apply(pool, [late])
    assert again.messages == first.messages
    assert not again.webhook_refusals


async def two_stripe_successes(pool: asyncpg.Pool, gateway: Any) -> list[PaymentCommand]:
    """Open Stripe payments pay-a and pay-b; their success webhooks (one event id for both)."""
    await apply(pool, [requested("pay-a"), requested("pay-b")], gateway)
    return [webhook("stripe", stripe_event("payment_intent.succeeded", f"stripe_pay-{x}"))
            for x in "ab"]  # fmt: skip


async def test_a_providers_event_id_shared_by_two_payments_moves_each_once(
    pool: asyncpg.Pool,
) -> None:
    gateway = ProviderGateway("stripe")
    paid = await two_stripe_successes(pool, gateway)
    # Two batches, one notification id (as a careless sender might reuse one): not a retry.
    await apply(pool, paid[:1], gateway)
    second = await apply(pool, paid[1:], gateway)
    assert [t.payment_id for t in second.transitions] == ["pay-b"]
    assert await status(pool, "pay-b") == "succeeded"


async def test_a_refund_id_two_workers_decide_at_once_reaches_the_gateway_once(
    pool: asyncpg.Pool,
) -> None:
    gateway = ProviderGateway("stripe")
    await apply(pool, await two_stripe_successes(pool, gateway), gateway)
    async with pool.acquire() as other, pool.acquire() as conn:
        async with other.transaction():
            # Another worker has decided refund rf-1 (for another payment), not yet committed.
            refund = RefundPayment(
                "rf-1", "pay-a", "r", "staff", True, "e1", "payment.refund.requested", "stu-1", "t"
            )
            decided = await apply_payment_commands(other, [refund], defaults(gateway), NOW)
            assert decided.refunds["rf-1"].outcome == "pending"
            racing = asyncio.create_task(_refund_in(conn, gateway, "pay-b"))
            await eventually(lambda: waits_on_a_lock(pool, conn), within=10)
        with pytest.raises(ConcurrentWriteError):
            await racing
    await make_calls(pool, gateway)
    assert gateway.refunds == ["rf-1"]  # once, for pay-a; pay-b's was never queued
    assert await status(pool, "pay-a") == "refunded"
    assert await status(pool, "pay-b") == "succeeded"


def refund_of(
    refund_id: str, payment_id: str, event_id: str, *, authorized: bool = True
) -> RefundPayment:
    return RefundPayment(
        refund_id, payment_id, "r", "staff", authorized, event_id, "payment.refund.requested",
        "stu-1", "t",
    )  # fmt: skip


async def decide(
    pool: asyncpg.Pool, commands: list[PaymentCommand], gateway: Any, now: datetime
) -> PaymentPlan:
    """One batch's transaction, its provider calls left queued."""
    async with pool.acquire() as conn, conn.transaction():
        return await apply_payment_commands(conn, commands, defaults(gateway), now)


async def test_a_later_batch_reads_back_refunds_in_flight_refund_decisions_and_answers(
    pool: asyncpg.Pool,
) -> None:
    """What a batch reads once its payments are locked (`payments_read`), part by part, each
    from an earlier batch: a refund still with the provider refuses a second refund of its
    payment; a refund id and a refused event delivered again later repeat their stored
    results byte for byte (a new decision would carry the later time)."""
    gateway = ProviderGateway("stripe")
    await apply(pool, await two_stripe_successes(pool, gateway), gateway)
    pending = await decide(pool, [refund_of("rf-1", "pay-a", "e-1")], gateway, NOW)
    assert pending.refunds["rf-1"].outcome == "pending"  # queued; the provider not asked yet

    later = NOW + timedelta(minutes=5)
    second = await decide(pool, [refund_of("rf-2", "pay-a", "e-2")], gateway, later)
    assert second.refunds["rf-2"].outcome == "rejected"  # rf-1 is in flight
    unauthorized = refund_of("rf-3", "pay-b", "e-3", authorized=False)
    refused = await decide(pool, [unauthorized], gateway, later)
    assert [json.loads(m.value)["data"]["reason"] for m in refused.messages] == ["not_authorized"]

    even_later = later + timedelta(minutes=5)
    again = await decide(
        pool, [refund_of("rf-2", "pay-a", "e-2"), unauthorized], gateway, even_later
    )
    assert [m.value for m in again.messages] == [
        *(m.value for m in second.messages),
        *(m.value for m in refused.messages),
    ]
    assert not again.calls
    await make_calls(pool, gateway)
    assert gateway.refunds == ["rf-1"]


async def test_a_refused_refund_does_not_hold_back_a_later_one(pool: asyncpg.Pool) -> None:
    """Only a pending refund is in flight: one refused earlier (the payment was not paid yet)
    leaves a later refund free to start."""
    gateway = ProviderGateway("stripe")
    await apply(pool, [requested("pay-a")], gateway)
    early = await decide(pool, [refund_of("rf-0", "pay-a", "e-0")], gateway, NOW)
    assert early.refunds["rf-0"].outcome == "rejected"
    paid = stripe_event("payment_intent.succeeded", "stripe_pay-a")
    await apply(pool, [webhook("stripe", paid)], gateway)
    later = await decide(pool, [refund_of("rf-1", "pay-a", "e-1")], gateway, NOW)
    assert later.refunds["rf-1"].outcome == "pending"
    assert [call.reference_id for call in later.calls] == ["rf-1"]


async def _refund_in(conn: Any, gateway: Any, payment_id: str) -> None:
    async with conn.transaction():
        command = RefundPayment(
            "rf-1", payment_id, "r", "staff", True, "e2", "payment.refund.requested", "stu-1", "t"
        )
        await apply_payment_commands(conn, [command], defaults(gateway), NOW)


async def test_a_payment_that_cannot_be_expired_is_set_aside_and_the_sweep_goes_on(
    pool: asyncpg.Pool,
) -> None:
    await apply(pool, [requested(f"pay-{i}") for i in range(5)])  # all overdue by now
    # A rule the sweep does not know, enforced by the database alone: pay-2 can never expire.
    await pool.execute(
        "ALTER TABLE payment_transitions ADD CONSTRAINT trap"
        " CHECK (NOT (payment_id = 'pay-2' AND status = 'expired'))"
    )
    metrics = Metrics(CollectorRegistry())
    sweeper = Sweeper(pool, metrics, PAYMENTS, interval_seconds=0.05)
    sweeping = asyncio.create_task(sweeper.run())

    async def the_others_expired() -> None:
        assert not sweeping.done(), sweeping
        statuses = dict(await pool.fetch("SELECT payment_id, status FROM payments"))
        assert statuses == {f"pay-{i}": "initiated" if i == 2 else "expired" for i in range(5)}

    try:
        await eventually(the_others_expired, within=30)
        assert metrics.registry.get_sample_value("payment_worker_expiry_failures_total") == 1
        assert not sweeping.done()
    finally:
        sweeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeping
