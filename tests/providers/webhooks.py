"""The providers' webhooks as they send them: bodies from their documented examples, signed.

Every builder returns the documented example's shape with test defaults; keyword overrides
replace top-level fields. The `*_event` helpers also put the object in the state the event
documents (a `checkout.session.expired` session is `expired` and `unpaid`, and so on).

Sources:
- Stripe Event: https://docs.stripe.com/api/events/object
- Stripe Checkout Session: https://docs.stripe.com/api/checkout/sessions/object and the
  fulfilment guide's events (https://docs.stripe.com/checkout/fulfillment)
- Stripe PaymentIntent: https://docs.stripe.com/api/payment_intents/object; a declined card's
  `last_payment_error`: https://docs.stripe.com/declines/codes, https://docs.stripe.com/testing
- Razorpay payment link events: https://razorpay.com/docs/webhooks/payment-links
- Razorpay payment events and entity: https://razorpay.com/docs/webhooks/payments,
  https://razorpay.com/docs/api/payments/fetch-with-id

Signatures come from the worker's own helpers (`worker.core.signatures`), so the tests sign
exactly as the verifier checks.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from collections.abc import Mapping
from typing import Any

from worker.core.signatures import (
    RAZORPAY_HEADER,
    STRIPE_HEADER,
    razorpay_signature,
    stripe_signature,
)

STRIPE_API_VERSION = "2026-10-28.endive"  # the version the stripe SDK 16.1.0 pins
_ALNUM = string.ascii_letters + string.digits


def _id(prefix: str, length: int = 14) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _now() -> int:
    return int(time.time())


# -- Stripe ----------------------------------------------------------------------------------


def stripe_event(
    event_type: str,
    obj: Mapping[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str = STRIPE_API_VERSION,
) -> str:
    """The body Stripe POSTs: an Event whose `data.object` is `obj` (pretty-printed, as
    Stripe sends it)."""
    event = {
        "id": event_id or _id("evt", 24),
        "object": "event",
        "api_version": api_version,
        "created": created or _now(),
        "data": {"object": dict(obj)},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, indent=2)


def stripe_checkout_session(**overrides: Any) -> dict[str, Any]:
    """A payment-mode Checkout Session its customer has paid (`complete`, `paid`)."""
    created = overrides.get("created") or _now()
    session: dict[str, Any] = {
        "id": _id("cs_test", 58),
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": 1234,
        "amount_total": 1234,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": None,
        "client_reference_id": None,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": "inr",
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": {
            "address": {
                "city": None,
                "country": "IN",
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": None,
        "discounts": [],
        "expires_at": created + 24 * 3600,
        "invoice": None,
        "invoice_creation": None,
        "livemode": False,
        "locale": None,
        "metadata": {},
        "mode": "payment",
        "payment_intent": _id("pi", 24),
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "complete",
        "submit_type": None,
        "subscription": None,
        "success_url": "https://example.com/success",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None,
    }
    return {**session, **overrides}


# What each Checkout event says of its session (https://docs.stripe.com/checkout/fulfillment):
# a delayed method (UPI, bank debits) completes `unpaid`, then an async event settles it.
STRIPE_CHECKOUT_STATES: dict[str, dict[str, Any]] = {
    "checkout.session.completed": {"status": "complete", "payment_status": "paid"},
    "checkout.session.async_payment_succeeded": {"status": "complete", "payment_status": "paid"},
    "checkout.session.async_payment_failed": {"status": "complete", "payment_status": "unpaid"},
    "checkout.session.expired": {
        "status": "expired",
        "payment_status": "unpaid",
        "payment_intent": None,
        "customer_details": None,
    },
}


def stripe_checkout_event(event_type: str, **overrides: Any) -> str:
    """A `checkout.session.*` event about a session in the state the event documents."""
    return stripe_event(
        event_type, stripe_checkout_session(**{**STRIPE_CHECKOUT_STATES[event_type], **overrides})
    )


def stripe_card_error(
    message: str = "Your card was declined.",
    *,
    code: str = "card_declined",
    decline_code: str | None = "generic_decline",
    charge: str | None = None,
) -> dict[str, Any]:
    """A PaymentIntent's `last_payment_error` after a declined card (Stripe's test card
    4000 0000 0000 0002 gives exactly this)."""
    return {
        "charge": charge or _id("ch", 24),
        "code": code,
        "decline_code": decline_code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        "message": message,
        "payment_method": {
            "id": _id("pm", 24),
            "object": "payment_method",
            "billing_details": {"address": None, "email": None, "name": None, "phone": None},
            "card": {"brand": "visa", "country": "US", "funding": "credit", "last4": "0002"},
            "created": _now(),
            "customer": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
        },
        "type": "card_error",
    }


def stripe_payment_intent(**overrides: Any) -> dict[str, Any]:
    """A PaymentIntent that succeeded: `amount_received` = `amount`."""
    intent_id = overrides.get("id") or _id("pi", 24)
    amount = overrides.get("amount", 1234)
    intent: dict[str, Any] = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": amount,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": None,
        "canceled_at": None,
        "cancellation_reason": None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
        "confirmation_method": "automatic",
        "created": _now(),
        "currency": "inr",
        "customer": None,
        "description": None,
        "last_payment_error": None,
        "latest_charge": _id("ch", 24),
        "livemode": False,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": _id("pm", 24),
        "payment_method_configuration_details": None,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }
    return {**intent, **overrides}


def stripe_payment_intent_event(event_type: str, **overrides: Any) -> str:
    """`payment_intent.succeeded`, or `payment_intent.payment_failed` (the intent back in
    `requires_payment_method`, `last_payment_error` a declined card unless overridden)."""
    state: dict[str, Any] = {}
    if event_type == "payment_intent.payment_failed":
        state = {
            "status": "requires_payment_method",
            "amount_received": 0,
            "payment_method": None,
            "last_payment_error": stripe_card_error(),
        }
    elif event_type != "payment_intent.succeeded":
        raise ValueError(f"no documented state for {event_type}")
    return stripe_event(event_type, stripe_payment_intent(**{**state, **overrides}))


def stripe_signature_header(body: str, secret: str, t: int | None = None) -> dict[str, str]:
    """`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    return {STRIPE_HEADER: stripe_signature(body, secret, _now() if t is None else t)}


# -- Razorpay --------------------------------------------------------------------------------


def razorpay_event(
    event: str,
    payload: Mapping[str, Mapping[str, Any]],
    *,
    account_id: str = "acc_BFQ7uQEaa7j2z7",
    created_at: int | None = None,
) -> str:
    """The body Razorpay POSTs; `payload` maps entity names ("payment_link", "payment",
    "order") to the entities, each wrapped as `{"entity": ...}` (compact JSON, as sent)."""
    body = {
        "entity": "event",
        "account_id": account_id,
        "event": event,
        "contains": list(payload),
        "payload": {name: {"entity": dict(entity)} for name, entity in payload.items()},
        "created_at": created_at or _now(),
    }
    return json.dumps(body, separators=(",", ":"))


def razorpay_payment_link(**overrides: Any) -> dict[str, Any]:
    """A Standard Payment Link nobody has paid yet (the API's entity; webhooks carry it
    without `payments`)."""
    now = _now()
    link: dict[str, Any] = {
        "accept_partial": False,
        "amount": 1000,
        "amount_paid": 0,
        "cancelled_at": 0,
        "created_at": now,
        "currency": "INR",
        "customer": {
            "contact": "+919000090000",
            "email": "gaurav.kumar@example.com",
            "name": "Gaurav Kumar",
        },
        "description": "Payment for policy no #23456",
        "expire_by": 0,
        "expired_at": 0,
        "first_min_partial_amount": 0,
        "id": _id("plink"),
        "notes": None,
        "notify": {"email": False, "sms": False, "whatsapp": False},
        "payments": None,
        "reference_id": "",
        "reminder_enable": False,
        "reminders": [],
        "short_url": "https://rzp.io/i/" + "".join(secrets.choice(_ALNUM) for _ in range(8)),
        "status": "created",
        "updated_at": now,
        "upi_link": False,
        "user_id": "",
        "whatsapp_link": False,
    }
    return {**link, **overrides}


def razorpay_payment(**overrides: Any) -> dict[str, Any]:
    """A captured payment (a UPI one unless `method` says otherwise)."""
    amount = overrides.get("amount", 1000)
    method = overrides.get("method", "upi")
    vpa = "gaurav.kumar@exampleupi" if method == "upi" else None
    fee = amount * 2 // 100
    payment: dict[str, Any] = {
        "id": _id("pay"),
        "entity": "payment",
        "amount": amount,
        "currency": "INR",
        "base_amount": amount,
        "status": "captured",
        "order_id": _id("order"),
        "invoice_id": None,
        "international": False,
        "method": method,
        "amount_refunded": 0,
        "amount_transferred": 0,
        "refund_status": None,
        "captured": True,
        "description": None,
        "card_id": None,
        "bank": None,
        "wallet": None,
        "vpa": vpa,
        "email": "gaurav.kumar@example.com",
        "contact": "+919000090000",
        "notes": [],
        "fee": fee,
        "tax": fee * 18 // 118,
        "error_code": None,
        "error_description": None,
        "error_source": None,
        "error_step": None,
        "error_reason": None,
        "acquirer_data": {"rrn": str(secrets.randbelow(10**12)).zfill(12)},
        "created_at": _now(),
    }
    if method == "upi":
        payment["upi"] = {"payer_account_type": "bank_account", "vpa": vpa, "flow": "intent"}
    return {**payment, **overrides}


# What `payment.failed` documents of its payment (the UPI example of
# https://razorpay.com/docs/webhooks/payments).
RAZORPAY_PAYMENT_FAILED: dict[str, Any] = {
    "status": "failed",
    "captured": False,
    "fee": None,
    "tax": None,
    "error_code": "BAD_REQUEST_ERROR",
    "error_description": "Payment failed",
    "error_source": "issuer",
    "error_step": "payment_authorization",
    "error_reason": "payment_failed",
    "acquirer_data": {"rrn": None},
}


def razorpay_order(**overrides: Any) -> dict[str, Any]:
    """The paid order behind a payment link's payment, as `payment_link.paid` carries it."""
    now = _now()
    order: dict[str, Any] = {
        "amount": 1000,
        "amount_due": 0,
        "amount_paid": 1000,
        "attempts": 1,
        "authorized": True,
        "created_at": now,
        "currency": "INR",
        "customer_id": None,
        "id": _id("order"),
        "method": None,
        "notes": [],
        "offers": {},
        "partial_payment": False,
        "payment_capture": True,
        "product_id": _id("plink").removeprefix("plink_"),
        "product_type": "payment_link_v2",
        "receipt": "",
        "status": "paid",
        "updated_at": now,
    }
    return {**order, **overrides}


def razorpay_link_event(
    event: str,
    *,
    payment: Mapping[str, Any] | None = None,
    order: Mapping[str, Any] | None = None,
    **link_overrides: Any,
) -> str:
    """A `payment_link.paid`, `.cancelled` or `.expired` event about a link in the state the
    event documents; `paid` also carries the payment and the order, consistent with the link
    (same amount, currency and order id) unless given."""
    now = _now()
    states: dict[str, dict[str, Any]] = {
        "payment_link.paid": {"status": "paid"},
        "payment_link.cancelled": {"status": "cancelled", "cancelled_at": now},
        "payment_link.expired": {"status": "expired", "expired_at": now},
    }
    link = razorpay_payment_link(**{**states[event], **link_overrides})
    link.pop("payments", None)  # the documented webhook entity has no `payments`
    if event != "payment_link.paid":
        return razorpay_event(event, {"payment_link": link})
    link["amount_paid"] = link_overrides.get("amount_paid", link["amount"])
    link.setdefault("order_id", _id("order"))
    same = {"amount": link["amount"], "currency": link["currency"]}
    paid_order = order or razorpay_order(
        **same, amount_paid=link["amount"], id=link["order_id"], receipt=link["reference_id"]
    )
    paid = payment or razorpay_payment(**same, order_id=link["order_id"], notes=link["notes"] or [])
    return razorpay_event(event, {"order": paid_order, "payment": paid, "payment_link": link})


def razorpay_payment_event(event: str, **overrides: Any) -> str:
    """`payment.captured`, or `payment.failed` (with the documented error fields)."""
    state = RAZORPAY_PAYMENT_FAILED if event == "payment.failed" else {}
    if event not in ("payment.captured", "payment.failed"):
        raise ValueError(f"no documented state for {event}")
    return razorpay_event(event, {"payment": razorpay_payment(**{**state, **overrides})})


def razorpay_signature_header(body: str, secret: str) -> dict[str, str]:
    """`X-Razorpay-Signature: <hex HMAC-SHA256 of the body>`."""
    return {RAZORPAY_HEADER: razorpay_signature(body, secret)}
