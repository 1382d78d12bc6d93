"""Payment events to commands: decoding, signature first, provider bodies, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.core.commands import command_for
from worker.core.envelope import BadInputError
from worker.core.handlers import Command, Policies, Rewards
from worker.core.payments import (
    IgnoreWebhook,
    OpenPayment,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
)
from worker.core.signatures import WebhookVerifier, razorpay_signature, stripe_signature
from worker.core.webhooks import Notification

T = 1795683600
POLICIES = Policies(
    Rewards(100, 50, 1_000_000),
    WebhookVerifier({"mock": b"m", "stripe": b"s", "razorpay": b"r"}),
)
SECRETS = {"mock": "m", "stripe": "s", "razorpay": "r"}


def event(kind: str, data: dict[str, Any], subject: str = "stu-1") -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": "evt-1", "type": kind, "source": "tests",
        "time": "2026-11-26T09:00:00Z", "subject": subject,
        "datacontenttype": "application/json", "data": data,
    }).encode()  # fmt: skip


def webhook(provider: str, body: Any, *, signed: bool = True, subject: str = "pp") -> Command:
    raw = body if isinstance(body, str) else json.dumps(body)
    secret = SECRETS[provider] if signed else "forged"
    if provider == "razorpay":
        headers = {"X-Razorpay-Signature": razorpay_signature(raw, secret),
                   "x-razorpay-event-id": "rzp-evt-1"}  # fmt: skip
    else:
        headers = {"Stripe-Signature": stripe_signature(raw, secret, T)}
    data = {"provider": provider, "headers": headers, "body": raw}
    return command_for(
        "payment.webhook.received",
        subject.encode(),
        event("payment.webhook.received", data, subject),
        (),
        POLICIES,
    )


def test_a_payment_request_becomes_an_open_payment_with_an_upper_case_currency() -> None:
    data = {"payment_id": "p-1", "student_id": "stu-1", "course_id": "c-1", "amount": 49900,
            "currency": "inr"}  # fmt: skip
    command = command_for(
        "payment.requested", b"stu-1", event("payment.requested", data), (), POLICIES
    )
    assert command == OpenPayment(
        "p-1", "stu-1", "c-1", 49900, "INR", None, "evt-1", "payment.requested", "tests"
    )


@pytest.mark.parametrize(("role", "authorized"), [("admin", True), ("support", False)])
def test_a_refund_request_is_authorized_only_for_admins(role: str, authorized: bool) -> None:
    data = {"refund_id": "rf-1", "payment_id": "p-1", "reason": "r",
            "actor": {"id": "staff-1", "role": role}}  # fmt: skip
    command = command_for(
        "payment.refund.requested", b"stu-1", event("payment.refund.requested", data), (), POLICIES
    )
    assert command == RefundPayment(
        "rf-1",
        "p-1",
        "r",
        "staff-1",
        authorized,
        "evt-1",
        "payment.refund.requested",
        "stu-1",
        "tests",
        actor_role=role,
        unauthorized_because=None if authorized else "actor role 'support' is not admin",
    )


def test_the_signature_is_checked_before_the_body_is_read() -> None:
    # A forged webhook with a body that is not even JSON is refused, not dead-lettered.
    command = webhook("mock", "not json at all", signed=False)
    assert isinstance(command, RefuseWebhook)
    assert (command.reason, command.subject) == ("invalid_signature", "pp")


def test_a_signed_body_that_is_not_its_providers_is_bad_input() -> None:
    for body in (
        "not json",
        {"id": "n", "type": "payment.succeeded"},
        {"id": "n", "type": "payment.refunded", "data": {}},
    ):
        with pytest.raises(BadInputError, match="webhook body"):
            webhook("mock", body)


MOCK = {
    "id": "n1", "type": "payment.failed",
    "data": {"provider_payment_id": "mp_1", "amount": 100, "currency": "inr", "reason": "declined"},
}  # fmt: skip
STRIPE_FAILED = {
    "id": "evt_1", "object": "event", "type": "payment_intent.payment_failed",
    "data": {"object": {"id": "pi_1", "object": "payment_intent", "amount": 100, "currency": "usd",
                        "last_payment_error": {"message": "Your card was declined."}}},
}  # fmt: skip
STRIPE_CANCELED = {
    "id": "evt_2", "type": "payment_intent.canceled",
    "data": {"object": {"id": "pi_1", "amount": 100, "currency": "usd",
                        "cancellation_reason": "abandoned"}},
}  # fmt: skip
RAZORPAY_CAPTURED = {
    "entity": "event", "event": "payment.captured", "contains": ["payment"],
    "payload": {"payment": {"entity": {"id": "pay_1", "amount": 100, "currency": "INR"}}},
}  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "body", "notification"),
    [
        ("mock", MOCK, Notification("mp_1", "failed", 100, "INR", "declined", event_id="n1")),
        ("stripe", STRIPE_FAILED,
         Notification("pi_1", "attempt_failed", 100, "USD", "Your card was declined.",
                      names="payment", event_id="evt_1")),
        ("stripe", STRIPE_CANCELED,
         Notification("pi_1", "cancelled", 100, "USD", "abandoned", names="payment",
                      event_id="evt_2")),
        ("razorpay", RAZORPAY_CAPTURED,
         Notification("pay_1", "succeeded", 100, "INR", captured_id="pay_1", names="payment",
                      event_id="rzp-evt-1")),
    ],
)  # fmt: skip
def test_each_providers_body_reports_a_status(
    provider: str, body: dict[str, Any], notification: Notification
) -> None:
    subject = notification.provider_payment_id
    command = webhook(provider, body, subject=subject)
    assert command == ReportStatus(
        provider, notification, "evt-1", "payment.webhook.received", subject, "tests"
    )  # type: ignore[arg-type]


def test_a_body_with_an_escaped_lone_surrogate_in_a_field_not_read_still_reports() -> None:
    # JSON.stringify writes "\\ud83d" for a name cut inside an emoji: valid ASCII, valid JSON,
    # read as the standard library reads it (jiter refuses it; worker.core.jsontext).
    entity = RAZORPAY_CAPTURED["payload"]["payment"]["entity"]
    body = {**RAZORPAY_CAPTURED, "payload": {"payment": {"entity": {
        **entity, "notes": {"student_name": "Ana \ud83d"}}}}}  # fmt: skip
    raw = json.dumps(body)
    assert "\\ud83d" in raw
    command = webhook("razorpay", raw, subject="pay_1")
    assert isinstance(command, ReportStatus)
    assert command.notification.status == "succeeded"


@pytest.mark.parametrize("noted", ["pay-1", "pay-\ud83d", "pay-\x00", "", "p" * 129, 7])
def test_a_payment_id_in_metadata_that_no_payment_could_have_names_none(noted: object) -> None:
    # Looked up, a lone surrogate or a NUL would fail the batch's statement (not UTF-8; not
    # PostgreSQL text): they, and what is no id at all, name no payment of the worker's.
    session = {"id": "cs_1", "mode": "payment", "amount_total": 100, "currency": "inr",
               "payment_status": "paid", "metadata": {"payment_id": noted}}  # fmt: skip
    body = {"id": "evt_4", "type": "checkout.session.completed", "data": {"object": session}}
    command = webhook("stripe", json.dumps(body), subject="cs_1")
    assert isinstance(command, ReportStatus)
    assert command.notification.status == "succeeded"
    assert command.notification.payment_id == (noted if noted == "pay-1" else None)


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("stripe", {"id": "evt_3", "type": "charge.succeeded", "data": {"object": {"id": "ch_1"}}}),
        ("razorpay", {"event": "order.paid", "payload": {"order": {}}}),
    ],
)
def test_a_verified_event_type_not_acted_on_is_ignored(provider: str, body: dict[str, Any]) -> None:
    assert isinstance(webhook(provider, body), IgnoreWebhook)


def test_a_stripe_amount_that_is_not_an_integer_is_bad_input() -> None:
    body = json.loads(json.dumps(STRIPE_FAILED))
    body["data"]["object"]["amount"] = 100.0
    with pytest.raises(BadInputError, match="stripe webhook body"):
        webhook("stripe", body)


@pytest.mark.parametrize(
    "data",
    [
        {"provider": "mock", "headers": {}, "body": "\ud800"},
        {"provider": "mock", "headers": {"Stripe-Signature": "t=1,v1=\ud800"}, "body": "{}"},
        {"provider": "mock", "headers": {"\udc00": "x"}, "body": "{}"},
    ],
)
def test_a_webhook_that_no_http_request_could_carry_is_bad_input(data: dict[str, Any]) -> None:
    with pytest.raises(BadInputError, match="data fails its schema"):
        command_for(
            "payment.webhook.received",
            b"pp",
            event("payment.webhook.received", data, "pp"),
            (),
            POLICIES,
        )


def test_json_nested_too_deep_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="nested too deeply"):
        command_for("course.completed", b"s", b"[" * 100_000, (), POLICIES)
