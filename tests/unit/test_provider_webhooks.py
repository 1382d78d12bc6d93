"""What the real flows' webhook bodies report (CONTRACT section 5): Stripe Checkout and
PaymentIntent events, Razorpay Payment Link and payment events, built from the providers'
documented examples (tests/providers/webhooks.py)."""

from __future__ import annotations

import json

import pytest

from tests.providers import webhooks
from worker.core.webhooks import Notification, parse_notification


def stripe_session(event_type: str, **overrides: object) -> Notification | None:
    return parse_notification("stripe", webhooks.stripe_checkout_event(event_type, **overrides))


SESSION = {
    "id": "cs_test_1",
    "amount_total": 49900,
    "currency": "inr",
    "metadata": {"payment_id": "pay-1"},
    "client_reference_id": "pay-1",
    "payment_intent": "pi_1",
}


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("checkout.session.completed", "succeeded"),
        ("checkout.session.async_payment_succeeded", "succeeded"),
        ("checkout.session.async_payment_failed", "failed"),
        ("checkout.session.expired", "expired"),
    ],
)
def test_stripe_checkout_events_report_the_sessions_status(event_type: str, status: str) -> None:
    notification = stripe_session(event_type, **SESSION)
    assert notification is not None
    assert notification.provider_payment_id == "cs_test_1"
    assert (notification.status, notification.amount, notification.currency) == (
        status, 49900, "INR",
    )  # fmt: skip
    assert notification.payment_id == "pay-1"
    assert notification.captured_id == ("pi_1" if status == "succeeded" else None)


def test_a_checkout_completed_unpaid_waits_for_the_async_outcome() -> None:
    assert stripe_session("checkout.session.completed", payment_status="unpaid") is None


def test_only_the_workers_own_metadata_names_a_payment() -> None:
    # client_reference_id is left to other integrations of the account: not trusted.
    notification = stripe_session(
        "checkout.session.completed", **{**SESSION, "metadata": {}, "client_reference_id": "p-9"}
    )
    assert notification is not None
    assert notification.payment_id is None
    odd = stripe_session("checkout.session.completed", **{**SESSION, "metadata": {"payment_id": 7}})
    assert odd is not None
    assert odd.payment_id is None


def test_verified_events_of_objects_that_are_not_the_workers_are_not_bad_input() -> None:
    # Another integration's setup-mode session, and a currency the worker never charges.
    setup = {**SESSION, "mode": "setup", "amount_total": None, "currency": None}
    assert stripe_session("checkout.session.completed", **setup) is None
    foreign = stripe_session("checkout.session.expired", **{**SESSION, "currency": "xts"})
    assert foreign is not None
    assert foreign.currency == "XTS"  # matches no payment: unknown_payment or amount_mismatch
    notes = webhooks.razorpay_payment_event("payment.failed", notes={"payment_id": 42})
    failed = parse_notification("razorpay", notes)
    assert failed is not None
    assert failed.payment_id is None


def test_a_payment_intent_success_confirms_only_what_was_received() -> None:
    body = webhooks.stripe_payment_intent_event(
        "payment_intent.succeeded", id="pi_1", amount=49900, amount_received=20000,
        metadata={"payment_id": "pay-1"},
    )  # fmt: skip
    notification = parse_notification("stripe", body)
    assert notification is not None
    assert (notification.status, notification.amount) == ("succeeded", 20000)
    assert (notification.payment_id, notification.captured_id) == ("pay-1", "pi_1")
    not_succeeded = webhooks.stripe_payment_intent_event(
        "payment_intent.succeeded", id="pi_1", amount=49900, status="processing"
    )
    assert parse_notification("stripe", not_succeeded).amount == 0  # type: ignore[union-attr]


def test_a_failed_payment_intent_is_one_failed_attempt_with_stripes_reason() -> None:
    body = webhooks.stripe_payment_intent_event("payment_intent.payment_failed", id="pi_1")
    notification = parse_notification("stripe", body)
    assert notification is not None
    assert notification.status == "attempt_failed"
    assert notification.reason == "Your card was declined."


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("payment_link.paid", "succeeded"),
        ("payment_link.cancelled", "cancelled"),
        ("payment_link.expired", "expired"),
    ],
)
def test_razorpay_payment_link_events_report_the_links_status(event: str, status: str) -> None:
    pay = webhooks.razorpay_payment(id="pay_1", amount=49900, currency="INR")
    body = webhooks.razorpay_link_event(
        event, id="plink_1", amount=49900, reference_id="pay-1", notes={"payment_id": "pay-1"},
        payment=pay if event == "payment_link.paid" else None,
    )  # fmt: skip
    notification = parse_notification("razorpay", body)
    assert notification is not None
    assert (notification.provider_payment_id, notification.status) == ("plink_1", status)
    assert (notification.amount, notification.currency) == (49900, "INR")
    assert notification.payment_id == "pay-1"
    assert notification.captured_id == ("pay_1" if status == "succeeded" else None)


def test_a_razorpay_link_paid_in_part_reports_what_was_paid() -> None:
    body = webhooks.razorpay_link_event(
        "payment_link.paid", id="plink_1", amount=49900, amount_paid=100
    )
    assert parse_notification("razorpay", body).amount == 100  # type: ignore[union-attr]


def test_a_razorpay_link_without_reference_or_notes_names_no_payment() -> None:
    body = webhooks.razorpay_link_event("payment_link.cancelled", id="plink_1")
    assert json.loads(body)["payload"]["payment_link"]["entity"]["reference_id"] == ""
    notification = parse_notification("razorpay", body)
    assert notification is not None
    assert notification.payment_id is None


def test_a_failed_razorpay_payment_is_one_failed_attempt() -> None:
    body = webhooks.razorpay_payment_event("payment.failed", id="pay_1", amount=49900)
    notification = parse_notification("razorpay", body)
    assert notification is not None
    assert notification.status == "attempt_failed"
    assert notification.reason
