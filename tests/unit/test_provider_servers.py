"""The provider stand-ins under the providers' own SDKs: RazorpayServer under `razorpay`,
RecordingProxy (in front of stripe-mock) under `stripe`, and the webhooks they sign.

The Stripe tests need stripe-mock at $STRIPE_API_BASE (default http://127.0.0.1:12111).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import razorpay
import stripe
from razorpay.errors import BadRequestError, ServerError
from stripe.params.checkout import SessionCreateParams

from tests.providers import webhooks
from tests.providers.razorpay_server import (
    AUTH_FAILED,
    DUPLICATE_REFERENCE_ID,
    EXPIRY_TOO_SOON,
    FULLY_REFUNDED,
    IDEMPOTENCY_MISMATCH,
    NOT_CAPTURED,
    REFUND_TOO_LARGE,
    URL_NOT_FOUND,
    RazorpayServer,
    razorpay_error,
)
from tests.providers.recorded import Headers
from tests.providers.recording_proxy import RecordingProxy, stripe_error
from worker.core.signatures import WebhookVerifier

STRIPE_MOCK = os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
KEY_ID, KEY_SECRET = "rzp_test_key", "rzp_test_secret"


def link_params(**overrides: Any) -> dict[str, Any]:
    return {
        "amount": 49900,
        "currency": "INR",
        "reference_id": "pay-1",
        "description": "Coins for order 1",
        "expire_by": int(time.time()) + 3600,
        "notes": {"payment_id": "pay-1"},
        "callback_url": "https://example.com/paid",
        "callback_method": "get",
        **overrides,
    }


def raw(
    server: RazorpayServer | RecordingProxy,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """A request without the SDK, to see the status and body it would hide."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        payload = None if body is None else json.dumps(body)
        connection.request(method, path, body=payload, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def basic_auth(key_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()}


@pytest.fixture
def server() -> Iterator[RazorpayServer]:
    with RazorpayServer(KEY_ID, KEY_SECRET) as running:
        yield running
        assert running.errors == []


@pytest.fixture
def client(server: RazorpayServer) -> Iterator[razorpay.Client]:
    sdk = razorpay.Client(auth=(KEY_ID, KEY_SECRET), base_url=server.base_url)
    yield sdk
    sdk.session.close()


# -- RazorpayServer under the razorpay SDK -------------------------------------------------------


def test_a_created_payment_link_has_the_documented_entity(client: razorpay.Client) -> None:
    link = client.payment_link.create(link_params())

    assert re.fullmatch(r"plink_[A-Za-z0-9]{14}", link["id"])
    assert re.fullmatch(r"https://rzp\.io/i/[A-Za-z0-9]+", link["short_url"])
    assert link["status"] == "created"
    assert (link["amount"], link["amount_paid"], link["currency"]) == (49900, 0, "INR")
    assert link["reference_id"] == "pay-1"
    assert link["notes"] == {"payment_id": "pay-1"}
    assert link["accept_partial"] is False
    assert link["payments"] is None  # "Until then, the value is null."
    assert link["callback_url"] == "https://example.com/paid"
    assert client.payment_link.fetch(link["id"]) == link


def test_a_used_reference_id_is_refused(server: RazorpayServer, client: razorpay.Client) -> None:
    client.payment_link.create(link_params())

    with pytest.raises(BadRequestError, match=DUPLICATE_REFERENCE_ID):
        client.payment_link.create(link_params(amount=100))
    assert len(server.links) == 1


def test_links_are_found_by_reference_id(client: razorpay.Client) -> None:
    first = client.payment_link.create(link_params())
    client.payment_link.create(link_params(reference_id="pay-2"))

    assert client.payment_link.all({"reference_id": "pay-1"}) == {"payment_links": [first]}
    assert client.payment_link.all({"reference_id": "pay-9"}) == {"payment_links": []}
    assert len(client.payment_link.all()["payment_links"]) == 2


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"amount": 99}, "The amount must be at least INR 1.00"),
        ({"amount": "499"}, "The amount must be an integer."),
        ({"amount": None}, "The amount field is required."),
        ({"expire_by": int(time.time()) + 60}, EXPIRY_TOO_SOON),
        ({"colour": "red"}, "colour is/are not required and should not be sent"),
    ],
)
def test_link_requests_are_validated_as_documented(
    client: razorpay.Client, params: dict[str, Any], description: str
) -> None:
    with pytest.raises(BadRequestError) as refused:
        client.payment_link.create(link_params(**params))
    assert str(refused.value) == description


def test_a_link_past_expire_by_reads_expired() -> None:
    now = [time.time()]
    with RazorpayServer(KEY_ID, KEY_SECRET, clock=lambda: now[0]) as server:
        sdk = razorpay.Client(auth=(KEY_ID, KEY_SECRET), base_url=server.base_url)
        link = sdk.payment_link.create(link_params(expire_by=int(now[0]) + 900))
        now[0] += 900

        fetched = sdk.payment_link.fetch(link["id"])
        sdk.session.close()
    assert (fetched["status"], fetched["expired_at"]) == ("expired", link["expire_by"])


def test_cancel_answers_the_cancelled_link_and_refuses_a_paid_one(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    link = client.payment_link.create(link_params())
    cancelled = client.payment_link.cancel(link["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelled_at"] > 0

    paid = client.payment_link.create(link_params(reference_id="pay-2"))
    server.pay(paid["id"])
    with pytest.raises(BadRequestError, match="already paid"):
        client.payment_link.cancel(paid["id"])


def test_pay_then_refund_in_two_parts(server: RazorpayServer, client: razorpay.Client) -> None:
    link = client.payment_link.create(link_params())

    payment_id = server.pay(link["id"])

    paid = client.payment_link.fetch(link["id"])
    assert (paid["status"], paid["amount_paid"]) == ("paid", 49900)
    assert [(p["payment_id"], p["status"]) for p in paid["payments"]] == [(payment_id, "captured")]
    payment = client.payment.fetch(payment_id)
    assert re.fullmatch(r"pay_[A-Za-z0-9]{14}", payment_id)
    assert (payment["status"], payment["captured"], payment["amount"]) == ("captured", True, 49900)
    assert payment["order_id"] == paid["order_id"]

    first = client.payment.refund(payment_id, {"amount": 9900, "notes": {"reason": "partial"}})
    second = client.payment.refund(payment_id, {"receipt": "r-2", "speed": "optimum"})

    assert re.fullmatch(r"rfnd_[A-Za-z0-9]{14}", first["id"])
    assert (first["entity"], first["amount"], first["payment_id"]) == ("refund", 9900, payment_id)
    assert (first["status"], first["notes"]) == ("processed", {"reason": "partial"})
    assert (second["amount"], second["receipt"], second["speed_requested"]) == (
        40000,
        "r-2",
        "optimum",
    )
    refunds = client.payment.fetch_multiple_refund(payment_id)
    assert (refunds["entity"], refunds["count"]) == ("collection", 2)
    assert [r["id"] for r in refunds["items"]] == [second["id"], first["id"]]
    refunded = client.payment.fetch(payment_id)
    assert (refunded["status"], refunded["refund_status"]) == ("refunded", "full")
    assert refunded["amount_refunded"] == 49900


def test_refunds_beyond_the_payment_are_refused(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    payment_id = server.pay(client.payment_link.create(link_params())["id"])
    with pytest.raises(BadRequestError, match=REFUND_TOO_LARGE):
        client.payment.refund(payment_id, {"amount": 50000})

    client.payment.refund(payment_id, {})

    with pytest.raises(BadRequestError, match=FULLY_REFUNDED):
        client.payment.refund(payment_id, {})
    assert len(server.refunds[payment_id]) == 1


def test_an_uncaptured_payment_cannot_be_refunded(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    link = client.payment_link.create(link_params())
    payment_id = server.pay(link["id"], status="authorized")

    with pytest.raises(BadRequestError, match=NOT_CAPTURED):
        client.payment.refund(payment_id, {})
    assert client.payment_link.fetch(link["id"])["status"] == "created"


def test_a_refund_idempotency_key_answers_the_first_refund(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    payment_id = server.pay(client.payment_link.create(link_params())["id"])
    key = {"X-Refund-Idempotency": "refund-pay-1-attempt"}

    first = client.payment.refund(payment_id, {"amount": 100}, headers=dict(key))
    again = client.payment.refund(payment_id, {"amount": 100}, headers=dict(key))

    assert again == first
    assert len(server.refunds[payment_id]) == 1
    status, body = raw(
        server,
        "POST",
        f"/v1/payments/{payment_id}/refund",
        {"amount": 200},
        {**key, **basic_auth(KEY_ID, KEY_SECRET)},
    )
    assert (status, body["error"]["description"]) == (409, IDEMPOTENCY_MISMATCH)
    recorded = server.requests.matching("POST", f"/v1/payments/{payment_id}/refund")
    assert [r.headers["x-refund-idempotency"] for r in recorded] == [
        key["X-Refund-Idempotency"]
    ] * 3


def test_wrong_or_missing_credentials_answer_401(server: RazorpayServer) -> None:
    wrong = razorpay.Client(auth=(KEY_ID, "not-the-secret"), base_url=server.base_url)
    with pytest.raises(BadRequestError, match=AUTH_FAILED):
        wrong.payment_link.create(link_params())
    wrong.session.close()

    for headers in ({}, basic_auth("rzp_test_other", KEY_SECRET), {"Authorization": "Basic %%"}):
        assert raw(server, "GET", "/v1/payment_links", headers=headers) == (
            401,
            razorpay_error(AUTH_FAILED),
        )
    assert server.links == {}


def test_an_unknown_path_or_id_answers_the_documented_error(server: RazorpayServer) -> None:
    auth = basic_auth(KEY_ID, KEY_SECRET)
    status, body = raw(server, "GET", "/v1/nowhere", headers=auth)
    assert (status, body) == (400, razorpay_error(URL_NOT_FOUND))
    status, body = raw(server, "GET", "/v1/payments/pay_00000000000000", headers=auth)
    assert body["error"]["description"] == "The id provided does not exist"
    assert set(body["error"]) == {
        "code",
        "description",
        "field",
        "source",
        "step",
        "reason",
        "metadata",
    }


def test_fail_next_answers_without_reaching_the_api(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    server.fail_next(
        500, razorpay_error("We are facing some trouble", code="SERVER_ERROR"), times=2
    )

    for _ in range(2):
        with pytest.raises(ServerError, match="We are facing some trouble"):
            client.payment_link.create(link_params())
    assert server.links == {}
    assert client.payment_link.create(link_params())["status"] == "created"
    assert len(server.requests) == 3


def test_every_request_is_recorded(server: RazorpayServer, client: razorpay.Client) -> None:
    client.payment_link.create(link_params())
    client.payment_link.all({"reference_id": "pay-1"})

    create, find = server.requests.wait_for(2)
    assert (create.method, create.path) == ("POST", "/v1/payment_links")
    assert create.json() == link_params() | {"expire_by": create.json()["expire_by"]}
    assert create.headers["content-type"] == create.headers["Content-Type"] == "application/json"
    assert create.headers["authorization"] == basic_auth(KEY_ID, KEY_SECRET)["Authorization"]
    assert create.headers["User-Agent"].startswith("Razorpay-Python/")
    assert (find.method, find.path, find.query) == (
        "GET",
        "/v1/payment_links",
        {"reference_id": ["pay-1"]},
    )
    assert find.body == b""


def test_a_hung_request_is_applied_only_once_released(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    server.hang()
    with ThreadPoolExecutor(1) as pool:
        creating = pool.submit(client.payment_link.create, link_params())
        server.requests.wait_for(1)
        assert not creating.done()
        assert server.links == {}
        server.unhang()
        server.release()
        link = creating.result(timeout=5)
    assert server.links == {link["id"]: link}


def test_closing_drops_hung_requests_at_once() -> None:
    server = RazorpayServer(KEY_ID, KEY_SECRET).start()
    sdk = razorpay.Client(auth=(KEY_ID, KEY_SECRET), base_url=server.base_url)
    server.hang()
    with ThreadPoolExecutor(1) as pool:
        creating = pool.submit(sdk.payment_link.create, link_params())
        server.requests.wait_for(1)
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1
        with pytest.raises(Exception, match=r"Connection aborted|RemoteDisconnected"):
            creating.result(timeout=5)
    sdk.session.close()
    assert server.links == {}


def test_a_held_refund_is_done_before_it_is_answered(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    payment_id = server.pay(client.payment_link.create(link_params())["id"])
    hold = server.hold_after_processing()
    with ThreadPoolExecutor(1) as pool:
        refunding = pool.submit(client.payment.refund, payment_id, {"amount": 100})
        assert hold.forwarded.wait(5)
        assert hold.request is not None
        assert hold.request.path == f"/v1/payments/{payment_id}/refund"
        assert [r["amount"] for r in server.refunds[payment_id]] == [100]
        assert not refunding.done()
        hold.release()
        assert refunding.result(timeout=5)["id"] == server.refunds[payment_id][0]["id"]


def test_the_webhooks_it_signs_pass_the_workers_verifier(
    server: RazorpayServer, client: razorpay.Client
) -> None:
    link = client.payment_link.create(link_params())
    payment_id = server.pay(link["id"])

    body, headers = server.webhook("payment_link.paid", link["id"])

    verifier = WebhookVerifier({"razorpay": server.webhook_secret.encode()})
    verifier.verify("razorpay", headers, body, datetime.now(UTC))
    event = json.loads(body)
    assert (event["entity"], event["event"]) == ("event", "payment_link.paid")
    assert event["contains"] == ["payment_link", "payment", "order"]
    sent_link = event["payload"]["payment_link"]["entity"]
    assert (sent_link["id"], sent_link["status"], sent_link["amount_paid"]) == (
        link["id"],
        "paid",
        49900,
    )
    assert (sent_link["reference_id"], sent_link["notes"]) == ("pay-1", {"payment_id": "pay-1"})
    assert "payments" not in sent_link
    sent_payment = event["payload"]["payment"]["entity"]
    assert (sent_payment["id"], sent_payment["status"]) == (payment_id, "captured")
    assert event["payload"]["order"]["entity"]["id"] == sent_payment["order_id"]

    failed_id = server.pay(
        client.payment_link.create(link_params(reference_id="p2"))["id"], status="failed"
    )
    body, _ = server.webhook("payment.failed", failed_id)
    failed = json.loads(body)["payload"]["payment"]["entity"]
    assert (failed["status"], failed["error_description"]) == ("failed", "Payment failed")


# -- RecordingProxy in front of stripe-mock, under the stripe SDK --------------------------------


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    with RecordingProxy(STRIPE_MOCK) as running:
        yield running
        assert running.errors == []


@pytest.fixture
async def stripe_http() -> AsyncIterator[stripe.HTTPXClient]:
    http_client = stripe.HTTPXClient(timeout=5)
    yield http_client
    await http_client.close_async()  # type: ignore[no-untyped-call]
    http_client.close()  # type: ignore[no-untyped-call]


def stripe_client(
    proxy: RecordingProxy, http_client: stripe.HTTPXClient, retries: int = 0
) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_123",
        base_addresses={"api": proxy.base_url},
        http_client=http_client,
        max_network_retries=retries,
    )


SESSION: SessionCreateParams = {
    "mode": "payment",
    "line_items": [
        {
            "price_data": {
                "currency": "inr",
                "unit_amount": 1234,
                "product_data": {"name": "c1"},
            },
            "quantity": 1,
        }
    ],
    "client_reference_id": "pay-1",
    "metadata": {"payment_id": "pay-1"},
    "success_url": "https://example.com/ok",
}


async def test_the_proxy_forwards_and_records_the_idempotency_key(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http)

    session = await client.v1.checkout.sessions.create_async(
        params=SESSION, options={"idempotency_key": "pay-1-session"}
    )

    assert session.object == "checkout.session"
    assert session.id.startswith("cs_")
    (sent,) = proxy.requests
    assert (sent.method, sent.path) == ("POST", "/v1/checkout/sessions")
    assert sent.headers["idempotency-key"] == "pay-1-session"
    assert sent.headers["Authorization"] == "Bearer sk_test_123"
    form = sent.form()
    assert form["client_reference_id"] == ["pay-1"]
    assert form["metadata[payment_id]"] == ["pay-1"]
    assert form["line_items[0][price_data][unit_amount]"] == ["1234"]


async def test_queries_reach_upstream_as_sent(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http)

    intent = await client.v1.payment_intents.retrieve_async(
        "pi_123", params={"expand": ["latest_charge"]}
    )

    assert intent.id == "pi_123"
    (sent,) = proxy.requests
    assert sent.query == {"expand[0]": ["latest_charge"]}
    assert sent.target == "/v1/payment_intents/pi_123?expand[0]=latest_charge"  # as the SDK sent it


async def test_fail_next_raises_the_sdks_card_error(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http)
    declined = stripe_error(
        "card_error",
        "Your card was declined.",
        code="card_declined",
        decline_code="generic_decline",
    )
    proxy.fail_next(402, declined, headers={"Request-Id": "req_declined"})

    with pytest.raises(stripe.CardError) as raised:
        await client.v1.checkout.sessions.create_async(params=SESSION)

    assert raised.value.user_message == "Your card was declined."
    assert (raised.value.code, raised.value.http_status) == ("card_declined", 402)
    assert raised.value.request_id == "req_declined"
    assert len(proxy.requests) == 1


async def test_a_retryable_failure_is_retried_with_the_same_idempotency_key(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http, retries=1)
    proxy.fail_next(
        500,
        stripe_error("api_error", "Something went wrong on Stripe's end."),
        headers={"Stripe-Should-Retry": "true", "Retry-After": "0"},
    )

    session = await client.v1.checkout.sessions.create_async(
        params=SESSION, options={"idempotency_key": "pay-1-session"}
    )

    assert session.object == "checkout.session"
    assert [r.headers["Idempotency-Key"] for r in proxy.requests] == ["pay-1-session"] * 2


async def test_a_hung_request_is_forwarded_once_released(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http)
    proxy.hang()

    creating = asyncio.create_task(client.v1.checkout.sessions.create_async(params=SESSION))
    await asyncio.to_thread(proxy.requests.wait_for, 1)
    assert not creating.done()
    proxy.unhang()
    proxy.release()

    assert (await asyncio.wait_for(creating, 5)).object == "checkout.session"


async def test_hold_after_forward_answers_only_when_released(
    proxy: RecordingProxy, stripe_http: stripe.HTTPXClient
) -> None:
    client = stripe_client(proxy, stripe_http)
    hold = proxy.hold_after_forward()

    creating = asyncio.create_task(
        client.v1.checkout.sessions.create_async(
            params=SESSION, options={"idempotency_key": "pay-1-session"}
        )
    )
    assert await asyncio.to_thread(hold.forwarded.wait, 5)
    assert hold.request is not None
    assert hold.request.headers["Idempotency-Key"] == "pay-1-session"
    assert not creating.done()
    hold.release()

    assert (await asyncio.wait_for(creating, 5)).object == "checkout.session"


async def test_closing_does_not_wait_for_a_held_answer(stripe_http: stripe.HTTPXClient) -> None:
    proxy = RecordingProxy(STRIPE_MOCK).start()
    client = stripe_client(proxy, stripe_http)
    hold = proxy.hold_after_forward()
    creating = asyncio.create_task(client.v1.checkout.sessions.create_async(params=SESSION))
    assert await asyncio.to_thread(hold.forwarded.wait, 5)

    started = time.monotonic()
    proxy.close()

    assert time.monotonic() - started < 1
    with pytest.raises(stripe.APIConnectionError):
        await asyncio.wait_for(creating, 5)


# -- webhooks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "status", "payment_status"),
    [
        ("checkout.session.completed", "complete", "paid"),
        ("checkout.session.async_payment_succeeded", "complete", "paid"),
        ("checkout.session.async_payment_failed", "complete", "unpaid"),
        ("checkout.session.expired", "expired", "unpaid"),
    ],
)
def test_stripe_checkout_events_carry_the_documented_session(
    event_type: str, status: str, payment_status: str
) -> None:
    body = webhooks.stripe_checkout_event(
        event_type, client_reference_id="pay-1", metadata={"payment_id": "pay-1"}, amount_total=1234
    )

    event = json.loads(body)
    assert (event["object"], event["type"]) == ("event", event_type)
    assert event["id"].startswith("evt_")
    session = event["data"]["object"]
    assert session["id"].startswith("cs_test_")
    assert (session["object"], session["status"], session["payment_status"]) == (
        "checkout.session",
        status,
        payment_status,
    )
    assert (session["client_reference_id"], session["metadata"]) == (
        "pay-1",
        {"payment_id": "pay-1"},
    )
    assert (session["amount_total"], session["currency"]) == (1234, "inr")
    assert (session["payment_intent"] is None) == (status == "expired")


def test_stripe_payment_intent_events() -> None:
    succeeded = json.loads(
        webhooks.stripe_payment_intent_event(
            "payment_intent.succeeded", amount=500, metadata={"payment_id": "pay-1"}
        )
    )["data"]["object"]
    failed = json.loads(
        webhooks.stripe_payment_intent_event(
            "payment_intent.payment_failed",
            last_payment_error=webhooks.stripe_card_error("Your card has insufficient funds."),
        )
    )["data"]["object"]

    assert (succeeded["status"], succeeded["amount_received"]) == ("succeeded", 500)
    assert succeeded["metadata"] == {"payment_id": "pay-1"}
    assert (failed["status"], failed["amount_received"]) == ("requires_payment_method", 0)
    assert failed["last_payment_error"]["message"] == "Your card has insufficient funds."
    assert failed["last_payment_error"]["type"] == "card_error"


def test_stripe_signatures_pass_the_workers_verifier() -> None:
    body = webhooks.stripe_checkout_event("checkout.session.completed")
    at = int(time.time())

    headers = webhooks.stripe_signature_header(body, "whsec_test", t=at)

    assert headers["Stripe-Signature"].startswith(f"t={at},v1=")
    WebhookVerifier({"stripe": b"whsec_test"}).verify("stripe", headers, body, datetime.now(UTC))


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("payment_link.paid", "paid"),
        ("payment_link.cancelled", "cancelled"),
        ("payment_link.expired", "expired"),
    ],
)
def test_razorpay_link_events_carry_the_documented_link(event: str, status: str) -> None:
    body = webhooks.razorpay_link_event(event, amount=49900, reference_id="pay-1")
    headers = webhooks.razorpay_signature_header(body, "rzp_webhook_secret")

    WebhookVerifier({"razorpay": b"rzp_webhook_secret"}).verify(
        "razorpay", Headers(headers.items()), body, datetime.now(UTC)
    )
    sent = json.loads(body)
    link = sent["payload"]["payment_link"]["entity"]
    assert (sent["event"], link["status"], link["reference_id"]) == (event, status, "pay-1")
    if status == "paid":
        assert sent["contains"] == ["order", "payment", "payment_link"]
        payment = sent["payload"]["payment"]["entity"]
        assert link["amount_paid"] == payment["amount"] == 49900
        assert payment["order_id"] == link["order_id"] == sent["payload"]["order"]["entity"]["id"]
    else:
        assert sent["contains"] == ["payment_link"]
        assert link["amount_paid"] == 0


def test_razorpay_payment_failed_carries_the_error() -> None:
    body = webhooks.razorpay_payment_event("payment.failed", error_description="Card declined")

    payment = json.loads(body)["payload"]["payment"]["entity"]
    assert (payment["status"], payment["captured"]) == ("failed", False)
    assert (payment["error_code"], payment["error_description"]) == (
        "BAD_REQUEST_ERROR",
        "Card declined",
    )
