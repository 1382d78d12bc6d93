"""Real gateways end to end (CONTRACT section 5): a worker process talks to Stripe's simulator
stripe-mock (through a recording proxy, since it keeps no state) and to the Razorpay API
stand-in, through the official SDKs; events and results go through the real broker.

request -> session with the provider's URL -> signed provider webhook -> confirmed -> admin
refund -> refunded, for each provider; a crash between the provider's answer and the database
commit; a replayed request; a provider that never answers while coin events flow.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.e2e.conftest import RunningWorker, StartWorker
from tests.events import completed, payment_request, refund_request, send
from tests.providers import webhooks
from tests.providers.razorpay_server import RazorpayServer
from tests.providers.recording_proxy import RecordingProxy
from tests.support import eventually
from tests.worker_process import running_worker, worker_env

STRIPE_SECRET = "whsec_e2e_stripe"
RAZORPAY_SECRET = "rzp_webhook_secret"
KEY_ID, KEY_SECRET = "rzp_test_key", "rzp_test_secret"
SESSION_PATH = "/v1/checkout/sessions"


@pytest.fixture
def stripe_proxy(stack: Stack) -> Iterator[RecordingProxy]:
    with RecordingProxy(stack.stripe_api_base) as proxy:
        yield proxy


@pytest.fixture
def razorpay() -> Iterator[RazorpayServer]:
    with RazorpayServer(KEY_ID, KEY_SECRET, webhook_secret=RAZORPAY_SECRET) as server:
        yield server


def gateway_settings(proxy: RecordingProxy, razorpay: RazorpayServer) -> dict[str, str]:
    return {
        "STRIPE_API_KEY": "sk_test_e2e",
        "STRIPE_API_BASE": proxy.base_url,
        "RAZORPAY_KEY_ID": KEY_ID,
        "RAZORPAY_KEY_SECRET": KEY_SECRET,
        "RAZORPAY_API_BASE": razorpay.base_url,
        "PAYMENT_WEBHOOK_SECRET_STRIPE": STRIPE_SECRET,
        "PAYMENT_WEBHOOK_SECRET_RAZORPAY": RAZORPAY_SECRET,
    }


@pytest.fixture
async def gateway_worker(
    start_worker: StartWorker, stripe_proxy: RecordingProxy, razorpay: RazorpayServer
) -> RunningWorker:
    return await start_worker(**gateway_settings(stripe_proxy, razorpay))


def requested(pid: str, student: str, provider: str) -> dict[str, Any]:
    return {**payment_request(pid, student), "provider": provider}


async def session_of(w: RunningWorker, pid: str, at_least: int = 1) -> dict[str, Any]:
    async def opened() -> dict[str, Any]:
        events = await w.results("payment.session.created", at_least=at_least)
        found = [e["data"] for e in events if e["data"]["payment_id"] == pid]
        assert len(found) >= at_least, f"{len(found)} sessions for {pid}"
        return found[-1]

    return await eventually(opened, within=45)


async def result_of(w: RunningWorker, kind: str, pid: str) -> dict[str, Any]:
    async def arrived() -> dict[str, Any]:
        events = await w.results(kind, at_least=1)
        found = [e["data"] for e in events if e["data"].get("payment_id") == pid]
        assert found, f"no {kind} for {pid}"
        return found[0]

    return await eventually(arrived, within=45)


async def webhook(
    w: RunningWorker, producer: AIOKafkaProducer, provider: str, key: str, body: str
) -> None:
    if provider == "stripe":
        headers = webhooks.stripe_signature_header(body, STRIPE_SECRET)
    else:
        headers = webhooks.razorpay_signature_header(body, RAZORPAY_SECRET)
    data = {"provider": provider, "headers": headers, "body": body}
    await send(producer, w.prefix, "payment.webhook.received", data, key=key)


async def test_stripe_checkout_from_request_to_refund(
    gateway_worker: RunningWorker, producer: AIOKafkaProducer, stripe_proxy: RecordingProxy
) -> None:
    w = gateway_worker
    await send(producer, w.prefix, "payment.requested", requested("pay-s", "ana", "stripe"),
               key="ana")  # fmt: skip
    session = await session_of(w, "pay-s")
    assert session["provider"] == "stripe"
    assert session["provider_payment_id"].startswith("cs_")
    assert session["payment_url"].startswith("https://checkout.stripe.com/")
    [call] = stripe_proxy.requests.matching("POST", SESSION_PATH)
    assert call.form()["client_reference_id"] == ["pay-s"]

    paid = webhooks.stripe_checkout_event(
        "checkout.session.completed", id=session["provider_payment_id"], amount_total=49900,
        currency="inr", client_reference_id="pay-s", metadata={"payment_id": "pay-s"},
        payment_intent="pi_e2e_1",
    )  # fmt: skip
    await webhook(w, producer, "stripe", session["provider_payment_id"], paid)
    confirmed = await result_of(w, "payment.confirmed", "pay-s")
    assert confirmed["provider_payment_id"] == session["provider_payment_id"]

    await send(producer, w.prefix, "payment.refund.requested", refund_request("rf-s", "pay-s"),
               key="ana")  # fmt: skip
    refunded = await result_of(w, "payment.refunded", "pay-s")
    assert refunded["status"] == "refunded"
    [refund] = stripe_proxy.requests.matching("POST", "/v1/refunds")
    assert refund.form()["payment_intent"] == ["pi_e2e_1"]  # the money the webhook named
    assert refund.form()["amount"] == ["49900"]
    assert refund.headers["Idempotency-Key"]


async def test_razorpay_payment_link_from_request_to_refund(
    gateway_worker: RunningWorker, producer: AIOKafkaProducer, razorpay: RazorpayServer
) -> None:
    w = gateway_worker
    await send(producer, w.prefix, "payment.requested", requested("pay-r", "ben", "razorpay"),
               key="ben")  # fmt: skip
    session = await session_of(w, "pay-r")
    link_id = session["provider_payment_id"]
    assert session["provider"] == "razorpay"
    assert session["payment_url"] == razorpay.links[link_id]["short_url"]
    assert razorpay.links[link_id]["reference_id"] == "pay-r"

    paid_with = await asyncio.to_thread(razorpay.pay, link_id)
    body, _ = razorpay.webhook("payment_link.paid", link_id)
    await webhook(w, producer, "razorpay", link_id, body)
    await result_of(w, "payment.confirmed", "pay-r")

    await send(producer, w.prefix, "payment.refund.requested", refund_request("rf-r", "pay-r"),
               key="ben")  # fmt: skip
    await result_of(w, "payment.refunded", "pay-r")
    [refund] = razorpay.refunds[paid_with]  # one refund, of the captured payment
    assert refund["amount"] == 49900


async def test_a_provider_without_credentials_fails_its_payments_with_a_clear_reason(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker  # no Stripe or Razorpay keys
    await send(producer, w.prefix, "payment.requested", requested("pay-n", "cy", "razorpay"),
               key="cy")  # fmt: skip
    failed = await result_of(w, "payment.failed", "pay-n")
    assert "RAZORPAY_KEY_ID" in failed["reason"]


async def test_a_replayed_request_is_answered_without_asking_the_provider(
    gateway_worker: RunningWorker, producer: AIOKafkaProducer, stripe_proxy: RecordingProxy
) -> None:
    w = gateway_worker
    data = requested("pay-1", "dee", "stripe")
    await send(producer, w.prefix, "payment.requested", data, key="dee")
    first = await session_of(w, "pay-1")
    await send(producer, w.prefix, "payment.requested", data, key="dee")  # a new event id
    again = await session_of(w, "pay-1", at_least=2)
    assert again == first
    assert len(stripe_proxy.requests.matching("POST", SESSION_PATH)) == 1


async def test_a_worker_killed_after_the_providers_answer_repeats_the_call_with_the_same_key(
    stack: Stack,
    empty_db: str,
    tmp_path: Path,
    producer: AIOKafkaProducer,
    stripe_proxy: RecordingProxy,
    razorpay: RazorpayServer,
) -> None:
    env = worker_env(
        empty_db, stack.kafka_bootstrap, WORKER_BATCH_MAX_WAIT_MS="20",
        KAFKA_SESSION_TIMEOUT_MS="6000", **gateway_settings(stripe_proxy, razorpay),
    )  # fmt: skip
    prefix = env["KAFKA_TOPIC_PREFIX"]
    held = stripe_proxy.hold_after_forward()
    async with running_worker(env, tmp_path) as first:
        await first.wait_ready()
        data = requested("pay-k", "eve", "stripe")
        await send(producer, prefix, "payment.requested", data, key="eve")
        # Stripe has opened the session; its answer is held before it reaches the worker.
        assert await asyncio.to_thread(held.wait, 45), first.log_tail()
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
    held.release()
    assert await _session_url(empty_db, "pay-k") is None  # nothing of the answer was written

    async with running_worker(env, tmp_path) as second:
        w = RunningWorker(second, prefix, env["KAFKA_CONSUMER_GROUP"], empty_db,
                          stack.kafka_bootstrap)  # fmt: skip
        session = await session_of(w, "pay-k")
        calls = stripe_proxy.requests.matching("POST", SESSION_PATH)
        assert len(calls) == 2
        assert calls[0].headers["Idempotency-Key"] == calls[1].headers["Idempotency-Key"]
        # ... with the same parameters, as Stripe requires of a repeated key.
        assert calls[0].form() == calls[1].form()
        assert await _session_url(empty_db, "pay-k") == session["payment_url"]
        assert await second.stop() == 0, second.log_tail()
    # One session announced: the transition to `initiated` is written once, with its result.
    conn = await asyncpg.connect(empty_db)
    try:
        moves = await conn.fetch("SELECT status FROM payment_transitions")
        assert [m["status"] for m in moves] == ["initiated"]
        assert await conn.fetchval("SELECT count(*) FROM gateway_calls") == 0
    finally:
        await conn.close()
    sessions = await w.results("payment.session.created", at_least=1)
    assert [e["data"]["payment_id"] for e in sessions] == ["pay-k"]


async def _session_url(database_url: str, pid: str) -> str | None:
    conn = await asyncpg.connect(database_url)
    try:
        url: str | None = await conn.fetchval(
            "SELECT payment_url FROM payments WHERE payment_id = $1", pid
        )
        return url
    finally:
        await conn.close()


@pytest.fixture
async def hanging_stripe(stripe_proxy: RecordingProxy) -> AsyncIterator[RecordingProxy]:
    stripe_proxy.hang()
    yield stripe_proxy
    stripe_proxy.unhang()
    stripe_proxy.release()


async def test_a_provider_that_never_answers_delays_only_payments(
    start_worker: StartWorker,
    producer: AIOKafkaProducer,
    hanging_stripe: RecordingProxy,
    razorpay: RazorpayServer,
) -> None:
    w = await start_worker(
        PAYMENT_GATEWAY_TIMEOUT_SECONDS="1", **gateway_settings(hanging_stripe, razorpay)
    )
    for i in range(3):
        await send(producer, w.prefix, "payment.requested",
                   requested(f"pay-h{i}", "fay", "stripe"), key="fay")  # fmt: skip
    await asyncio.to_thread(hanging_stripe.requests.wait_for, 1, 30)  # the call hangs
    students = [f"stu-{i}" for i in range(10)]
    for n in range(5):
        for student in students:
            await send(producer, w.prefix, "course.completed", completed(student, f"c-{n}"),
                       key=student)  # fmt: skip
    credited = await w.results("coins.credited", at_least=50)
    assert len({json.dumps(e["data"], sort_keys=True) for e in credited}) == 50
    # Meanwhile no session opened: the provider still has not answered.
    conn = await asyncpg.connect(w.database_url)
    try:
        pending = await conn.fetch("SELECT payment_id, payment_url FROM payments")
        assert {r["payment_id"]: r["payment_url"] for r in pending} == {
            f"pay-h{i}": None for i in range(3)
        }
        assert await conn.fetchval("SELECT count(*) FROM gateway_calls") == 3
    finally:
        await conn.close()
    # The provider comes back, and an operator says "now" (else the calls wait out their pause):
    # the sessions open.
    hanging_stripe.unhang()
    hanging_stripe.release()
    conn = await asyncpg.connect(w.database_url)
    try:
        await conn.execute("UPDATE gateway_calls SET not_before = now()")
    finally:
        await conn.close()
    for i in range(3):
        await session_of(w, f"pay-h{i}")
