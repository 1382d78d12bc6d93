"""The Stripe and Razorpay gateways through the providers' official SDKs, against real HTTP
servers: Stripe's own simulator stripe-mock (behind a recording proxy, since it keeps no state)
and the documented Razorpay API (tests/providers/razorpay_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import Stack
from tests.providers.razorpay_server import RazorpayServer, razorpay_error
from tests.providers.recording_proxy import RecordingProxy, stripe_error
from worker.core.gateway import (
    GatewayRefusal,
    GatewayUnavailable,
    RefundRequest,
    SessionRequest,
)
from worker.gateways.razorpay import RazorpayGateway, reference_id
from worker.gateways.stripe import StripeGateway

KEY_ID, KEY_SECRET = "rzp_test_key", "rzp_test_secret"


def session_request(
    pid: str = "pay-1", amount: int = 49900, currency: str = "INR", ttl: timedelta | None = None
) -> SessionRequest:
    expires_at = datetime.now(UTC) + (ttl or timedelta(hours=1))
    return SessionRequest(pid, "stu-1", "course-1", amount, currency, None, expires_at)


def refund_request(
    provider_payment_id: str | None, captured_id: str | None = None, *, repeat: bool = False
) -> RefundRequest:
    return RefundRequest(
        "rf-1", "pay-1", provider_payment_id, captured_id, 49900, "INR", "duplicate", repeat
    )


@pytest.fixture
def stripe_proxy(stack: Stack) -> Iterator[RecordingProxy]:
    with RecordingProxy(stack.stripe_api_base) as proxy:
        yield proxy


def stripe_gateway(proxy: RecordingProxy, timeout: float = 5) -> StripeGateway:
    return StripeGateway("sk_test_123", proxy.base_url, timeout, "https://learn.test/paid")


@pytest.fixture
def razorpay() -> Iterator[RazorpayServer]:
    with RazorpayServer(KEY_ID, KEY_SECRET) as server:
        yield server


def razorpay_gateway(server: RazorpayServer, timeout: float = 5) -> RazorpayGateway:
    return RazorpayGateway(KEY_ID, KEY_SECRET, server.base_url, timeout, None, 4)


# --- Stripe -----------------------------------------------------------------------------------


async def test_stripe_opens_a_checkout_session_keyed_by_the_payment(
    stripe_proxy: RecordingProxy,
) -> None:
    request = session_request()
    session = await stripe_gateway(stripe_proxy).open_session(request)
    assert session.provider_payment_id.startswith("cs_")
    assert session.payment_url.startswith("https://")
    [sent] = stripe_proxy.requests.snapshot()
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.headers["Idempotency-Key"] == request.idempotency_key
    form = sent.form()
    assert form["mode"] == ["payment"]
    assert form["client_reference_id"] == ["pay-1"]
    assert form["metadata[payment_id]"] == ["pay-1"]
    assert form["payment_intent_data[metadata][payment_id]"] == ["pay-1"]
    assert form["line_items[0][price_data][unit_amount]"] == ["49900"]
    assert form["line_items[0][price_data][currency]"] == ["inr"]
    assert form["line_items[0][quantity]"] == ["1"]
    assert form["success_url"] == ["https://learn.test/paid"]
    assert int(form["expires_at"][0]) == int(request.expires_at.timestamp())


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [(timedelta(minutes=5), timedelta(minutes=31)), (timedelta(hours=48), timedelta(hours=24))],
)
async def test_stripe_session_expiry_is_kept_in_the_range_stripe_accepts(
    stripe_proxy: RecordingProxy, ttl: timedelta, expected: timedelta
) -> None:
    gateway = stripe_gateway(stripe_proxy)
    now = datetime.now(UTC)
    deadline = gateway.session_deadline(now + ttl, now)  # asked once per call
    assert abs(deadline - (now + expected)) <= timedelta(minutes=1)  # Stripe: 30 min .. 24 h
    request = replace(session_request(), expires_at=deadline)
    await gateway.open_session(request)
    await gateway.open_session(request)  # a repeat sends the very same parameters
    first, second = stripe_proxy.requests.snapshot()
    assert int(first.form()["expires_at"][0]) == int(deadline.timestamp())
    assert first.form() == second.form()


async def test_stripe_takes_three_decimal_amounts_ending_in_zero_and_refuses_others(
    stripe_proxy: RecordingProxy,
) -> None:
    gateway = stripe_gateway(stripe_proxy)
    await gateway.open_session(session_request(amount=1230, currency="KWD"))
    with pytest.raises(GatewayRefusal, match="multiples of 10"):
        await gateway.open_session(session_request(amount=1235, currency="KWD"))
    with pytest.raises(GatewayRefusal, match="does not support"):
        await gateway.open_session(session_request(currency="KPW"))
    assert len(stripe_proxy.requests) == 1  # the refusals never reached Stripe


async def test_stripe_refunds_the_payment_intent_with_the_refunds_idempotency_key(
    stripe_proxy: RecordingProxy,
) -> None:
    gateway = stripe_gateway(stripe_proxy)
    receipt = await gateway.refund(refund_request("cs_test_1", captured_id="pi_123"))
    assert receipt.provider_refund_id.startswith("re_")
    [sent] = stripe_proxy.requests.snapshot()
    assert (sent.method, sent.path) == ("POST", "/v1/refunds")
    assert sent.headers["Idempotency-Key"] == refund_request(None).idempotency_key
    assert sent.form()["payment_intent"] == ["pi_123"]
    assert sent.form()["amount"] == ["49900"]
    assert sent.form()["metadata[refund_id]"] == ["rf-1"]


async def test_a_stripe_refund_without_a_known_intent_asks_the_session_for_it(
    stripe_proxy: RecordingProxy,
) -> None:
    await stripe_gateway(stripe_proxy).refund(refund_request("cs_test_1"))
    paths = [(r.method, r.path) for r in stripe_proxy.requests.snapshot()]
    assert paths == [("GET", "/v1/checkout/sessions/cs_test_1"), ("POST", "/v1/refunds")]


async def test_a_repeated_stripe_refund_looks_for_the_earlier_one_first(
    stripe_proxy: RecordingProxy,
) -> None:
    await stripe_gateway(stripe_proxy).refund(refund_request("cs_1", "pi_1", repeat=True))
    paths = [(r.method, r.path) for r in stripe_proxy.requests.snapshot()]
    assert paths == [("GET", "/v1/refunds"), ("POST", "/v1/refunds")]
    assert stripe_proxy.requests.snapshot()[0].query["payment_intent"] == ["pi_1"]


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (402, stripe_error("card_error", "Your card was declined.", code="card_declined"),
         "Your card was declined."),
        (401, stripe_error("invalid_request_error", "Invalid API Key provided: sk_test_***"),
         "Invalid API Key"),
        (400, stripe_error("invalid_request_error", "Invalid currency: xyz", param="currency"),
         "Invalid currency"),
    ],
)  # fmt: skip
async def test_stripe_refusals_are_final_with_stripes_reason(
    stripe_proxy: RecordingProxy, status: int, error: dict[str, object], message: str
) -> None:
    stripe_proxy.fail_next(status, error)
    with pytest.raises(GatewayRefusal, match=message):
        await stripe_gateway(stripe_proxy).open_session(session_request())


async def test_stripe_failures_it_marks_as_passing_are_unavailable(
    stripe_proxy: RecordingProxy,
) -> None:
    gateway = stripe_gateway(stripe_proxy)
    stripe_proxy.fail_next(429, stripe_error("invalid_request_error", "Too many requests",
                                             code="rate_limit"), {"Retry-After": "7"})  # fmt: skip
    with pytest.raises(GatewayUnavailable) as limited:
        await gateway.open_session(session_request())
    assert limited.value.retry_after == 7
    stripe_proxy.fail_next(500, stripe_error("api_error", "Something went wrong on Stripe's end"))
    with pytest.raises(GatewayUnavailable):
        await gateway.open_session(session_request())
    # Stripe-Should-Retry overrides the status: a 409 Stripe says not to retry is final.
    stripe_proxy.fail_next(409, stripe_error("invalid_request_error", "Conflict"),
                           {"Stripe-Should-Retry": "false"})  # fmt: skip
    with pytest.raises(GatewayRefusal):
        await gateway.open_session(session_request())


async def test_a_stripe_that_does_not_answer_is_unavailable(stripe_proxy: RecordingProxy) -> None:
    stripe_proxy.hang()
    try:
        with pytest.raises(GatewayUnavailable):
            await stripe_gateway(stripe_proxy, timeout=0.5).open_session(session_request())
    finally:
        stripe_proxy.unhang()
        stripe_proxy.release()


# --- Razorpay ---------------------------------------------------------------------------------


async def test_razorpay_opens_a_payment_link_referenced_by_the_payment(
    razorpay: RazorpayServer,
) -> None:
    request = session_request()
    session = await razorpay_gateway(razorpay).open_session(request)
    link = razorpay.links[session.provider_payment_id]
    assert session.provider_payment_id.startswith("plink_")
    assert session.payment_url == link["short_url"]
    assert (link["amount"], link["currency"], link["reference_id"]) == (49900, "INR", "pay-1")
    assert link["notes"]["payment_id"] == "pay-1"
    assert link["accept_partial"] is False
    assert session.expires_at == datetime.fromtimestamp(link["expire_by"], UTC)


async def test_a_repeated_razorpay_session_finds_the_link_the_first_call_made(
    razorpay: RazorpayServer,
) -> None:
    gateway = razorpay_gateway(razorpay)
    first = await gateway.open_session(session_request())
    again = await gateway.open_session(session_request())
    assert again == first
    assert len(razorpay.links) == 1  # the unique reference_id kept it to one link
    long_id = "p" * 100  # longer than a reference_id may be: sent as a derived one
    assert len(reference_id(long_id)) <= 40
    made = await gateway.open_session(session_request(long_id))
    assert made == await gateway.open_session(session_request(long_id))
    assert razorpay.links[made.provider_payment_id]["notes"]["payment_id"] == long_id


async def test_razorpay_refunds_the_captured_payment_once(razorpay: RazorpayServer) -> None:
    gateway = razorpay_gateway(razorpay)
    session = await gateway.open_session(session_request())
    paid = await asyncio.to_thread(razorpay.pay, session.provider_payment_id)
    request = refund_request(session.provider_payment_id)
    first = await gateway.refund(request)
    refund_calls = razorpay.requests.matching("POST", f"/v1/payments/{paid}/refund")
    assert refund_calls[0].headers["X-Refund-Idempotency"] == request.idempotency_key
    assert refund_calls[0].json()["amount"] == 49900
    # A repeat (the outcome of the first was never written) finds it instead of refunding again.
    again = await gateway.refund(refund_request(session.provider_payment_id, paid, repeat=True))
    assert again == first
    assert len(razorpay.refunds[paid]) == 1


async def test_a_razorpay_refund_refused_after_an_earlier_attempt_went_through_is_that_refund(
    razorpay: RazorpayServer,
) -> None:
    gateway = razorpay_gateway(razorpay)
    session = await gateway.open_session(session_request())
    paid = await asyncio.to_thread(razorpay.pay, session.provider_payment_id)
    first = await gateway.refund(refund_request(session.provider_payment_id, paid))
    razorpay._idempotent.clear()
    # Razorpay refuses (the payment is fully refunded); the refund it made is found instead.
    again = await gateway.refund(refund_request(session.provider_payment_id, paid))
    assert again == first
    assert len(razorpay.refunds[paid]) == 1


async def test_a_razorpay_key_still_in_progress_is_tried_again(razorpay: RazorpayServer) -> None:
    razorpay.fail_next(409, razorpay_error("Request with the same idempotency key is in progress"))
    with pytest.raises(GatewayUnavailable):
        await razorpay_gateway(razorpay).open_session(session_request())


async def test_razorpay_refusals_and_passing_failures(razorpay: RazorpayServer) -> None:
    wrong = RazorpayGateway(KEY_ID, "not-the-secret", razorpay.base_url, 5, None, 2)
    with pytest.raises(GatewayRefusal, match="Authentication failed"):
        await wrong.open_session(session_request())
    gateway = razorpay_gateway(razorpay)
    razorpay.fail_next(400, razorpay_error("The currency provided is invalid", field="currency"))
    with pytest.raises(GatewayRefusal, match="currency provided is invalid"):
        await gateway.open_session(session_request("pay-2"))
    razorpay.fail_next(500, razorpay_error("We are facing some trouble", code="SERVER_ERROR"))
    with pytest.raises(GatewayUnavailable):
        await gateway.open_session(session_request("pay-3"))
    razorpay.fail_next(429, razorpay_error("Too many requests"), {"Retry-After": "3"})
    with pytest.raises(GatewayUnavailable) as limited:
        await gateway.open_session(session_request("pay-4"))
    assert limited.value.retry_after == 3


async def test_a_razorpay_that_does_not_answer_is_unavailable(razorpay: RazorpayServer) -> None:
    razorpay.hang()
    try:
        with pytest.raises(GatewayUnavailable):
            await razorpay_gateway(razorpay, timeout=0.5).open_session(session_request())
    finally:
        razorpay.unhang()
        razorpay.release()
