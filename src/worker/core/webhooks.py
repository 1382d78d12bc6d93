"""What a verified webhook body reports, per provider (CONTRACT section 5).

Each provider's body becomes one `Notification`: which payment (by provider payment id), which
status, the amount and currency. A body that is not what its provider sends is bad input; an
event type the worker does not act on (Stripe sends many) is `None`: acknowledged, not applied.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

from worker.core import jsontext
from worker.core.envelope import BadInputError
from worker.core.types import Id, NonNegativeAmount, Provider, Text
from worker.core.values import value_type

# What a webhook can report. `attempt_failed` is one failed try (a declined card): the student
# may pay again, so it does not close the payment (CONTRACT section 5).
ReportedStatus = Literal["succeeded", "failed", "cancelled", "expired", "attempt_failed"]


@value_type
class Notification:
    """One webhook's report. `amount` is in the provider's units; `payment_id` is the worker's
    id from the provider's metadata, when the body carries it; `captured_id` names the money a
    success captured (what a refund later names)."""

    provider_payment_id: str
    status: ReportedStatus
    amount: int
    currency: str
    reason: str | None = None
    payment_id: str | None = None
    captured_id: str | None = None
    # What `provider_payment_id` names: the session (mock, Checkout Session, Payment Link) or
    # the payment attempt's money (PaymentIntent, Razorpay payment).
    names: Literal["session", "payment"] = "session"
    # The provider's own id of this notification (Stripe `evt_...`, Razorpay's
    # `X-Razorpay-Event-Id` header, the mock body's `id`): a provider's retry repeats it.
    event_id: str | None = None


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# A currency as a provider writes it: three letters, any case. Not checked against ISO 4217
# here: a verified event of another integration's object (say, in a currency the worker never
# charges) must not become bad input; it simply matches no payment of ours.
ReportedCurrency = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), AfterValidator(lambda code: code.upper())
]


def _payment_id(value: Any) -> str | None:
    """The payment id the worker wrote into a provider's metadata, if `value` can be one: an
    id (1..128 characters, no control character) that UTF-8 can hold. Anything else names no
    payment of the worker's; looked up, a NUL or a lone surrogate would fail the batch's
    statement instead."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or _CONTROL.search(value):
        return None
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate, escaped in the body's JSON
        return None
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# mock: {"id": ..., "type": "payment.succeeded", "data": {"provider_payment_id", "amount", ...}}
class _MockData(_Body):
    provider_payment_id: Id
    amount: NonNegativeAmount
    currency: ReportedCurrency
    reason: Text | None = None


class _MockEvent(_Body):
    id: Id
    type: Literal["payment.succeeded", "payment.failed", "payment.cancelled"]
    data: _MockData


_MOCK_STATUS: dict[str, ReportedStatus] = {
    "payment.succeeded": "succeeded",
    "payment.failed": "failed",
    "payment.cancelled": "cancelled",
}


# stripe: an Event whose data.object is a Checkout Session or a PaymentIntent.
class _StripeEvent(_Body):
    id: Id
    type: str
    data: dict[str, Any]


class _StripeError(_Body):
    message: Text | None = None


# What the worker put in a provider's metadata is read leniently: another integration's object
# may carry anything there, and a verified body must not become bad input over it.
class _StripeMetadata(_Body):
    payment_id: Any = None


class _StripeCheckoutSession(_Body):
    id: Id
    mode: str | None = None
    # Null for sessions of other modes (setup, subscription): not the worker's.
    amount_total: NonNegativeAmount | None = None
    currency: ReportedCurrency | None = None
    payment_status: str
    metadata: _StripeMetadata | None = None
    payment_intent: Text | None = None


class _StripePaymentIntent(_Body):
    id: Id
    amount: NonNegativeAmount
    amount_received: NonNegativeAmount = 0
    currency: ReportedCurrency
    status: str | None = None
    metadata: _StripeMetadata | None = None
    last_payment_error: _StripeError | None = None
    cancellation_reason: Text | None = None


_STRIPE_SESSION_STATUS: dict[str, ReportedStatus] = {
    "checkout.session.completed": "succeeded",  # when paid; else it waits for the async events
    "checkout.session.async_payment_succeeded": "succeeded",
    "checkout.session.async_payment_failed": "failed",
    "checkout.session.expired": "expired",
}
_STRIPE_INTENT_STATUS: dict[str, ReportedStatus] = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "attempt_failed",
    "payment_intent.canceled": "cancelled",
}


# razorpay: {"event": "payment.captured", "payload": {"payment": {"entity": {...}}}}
class _RazorpayNotes(_Body):
    payment_id: Any = None


class _RazorpayPayment(_Body):
    id: Id
    amount: NonNegativeAmount
    currency: ReportedCurrency
    error_description: Text | None = None
    notes: _RazorpayNotes | list[Any] | None = None  # Razorpay writes empty notes as []


class _RazorpayPaymentWrapper(_Body):
    entity: _RazorpayPayment


class _RazorpayPayload(_Body):
    payment: _RazorpayPaymentWrapper


class _RazorpayLink(_Body):
    id: Id
    amount: NonNegativeAmount
    amount_paid: NonNegativeAmount = 0
    currency: ReportedCurrency
    reference_id: Text | None = None
    notes: _RazorpayNotes | list[Any] | None = None


class _RazorpayLinkWrapper(_Body):
    entity: _RazorpayLink


class _RazorpayLinkPayload(_Body):
    payment_link: _RazorpayLinkWrapper
    payment: _RazorpayPaymentWrapper | None = None


class _RazorpayEvent(_Body):
    event: str
    payload: dict[str, Any]


_RAZORPAY_PAYMENT_STATUS: dict[str, ReportedStatus] = {
    "payment.captured": "succeeded",
    "payment.failed": "attempt_failed",
}
_RAZORPAY_LINK_STATUS: dict[str, ReportedStatus] = {
    "payment_link.paid": "succeeded",
    "payment_link.cancelled": "cancelled",
    "payment_link.expired": "expired",
}


RAZORPAY_EVENT_ID_HEADER = "X-Razorpay-Event-Id"


def parse_notification(
    provider: Provider, body: str, headers: Mapping[str, str] | None = None
) -> Notification | None:
    """What the (already verified) `body` reports; None for an event type not acted on.
    `headers` are the provider's HTTP headers (Razorpay sends its event id in one)."""
    document = _json(body)
    try:
        if provider == "mock":
            return _mock(document)
        if provider == "stripe":
            return _stripe(document)
        notification = _razorpay(document)
        event_id = _razorpay_event_id(headers or {})
        return notification and replace(notification, event_id=event_id)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise BadInputError(f"{provider} webhook body: {details}") from None


def _razorpay_event_id(headers: Mapping[str, str]) -> str | None:
    """The `X-Razorpay-Event-Id` header's value, when it is one usable id (else None: such a
    webhook is simply not recognised by its event id)."""
    name = RAZORPAY_EVENT_ID_HEADER.lower()
    values = {value.strip() for key, value in headers.items() if key.lower() == name}
    if len(values) != 1:
        return None
    value = values.pop()
    usable = 0 < len(value) <= 128 and value.isprintable()
    return value if usable else None


def _json(body: str) -> Any:
    try:
        return jsontext.loads(body)
    except ValueError as exc:
        raise BadInputError(f"webhook body is not JSON: {exc}") from None


def _mock(document: Any) -> Notification:
    event = _MockEvent.model_validate(document)
    return Notification(
        provider_payment_id=event.data.provider_payment_id,
        status=_MOCK_STATUS[event.type],
        amount=event.data.amount,
        currency=event.data.currency,
        reason=event.data.reason,
        event_id=event.id,
    )


def _stripe(document: Any) -> Notification | None:
    event = _StripeEvent.model_validate(document)
    obj = event.data.get("object")
    status = _STRIPE_SESSION_STATUS.get(event.type)
    if status is not None:
        session = _StripeCheckoutSession.model_validate(obj)
        if session.mode not in (None, "payment") or session.currency is None:
            return None  # a setup or subscription session: never one of the worker's
        if event.type == "checkout.session.completed" and session.payment_status != "paid":
            return None  # an async payment method: its outcome comes in a later event
        return Notification(
            provider_payment_id=session.id,
            status=status,
            amount=session.amount_total or 0,
            currency=session.currency,
            payment_id=_payment_id((session.metadata or _StripeMetadata()).payment_id),
            captured_id=session.payment_intent if status == "succeeded" else None,
            event_id=event.id,
        )
    status = _STRIPE_INTENT_STATUS.get(event.type)
    if status is None:
        return None
    intent = _StripePaymentIntent.model_validate(obj)
    amount = intent.amount
    if status == "succeeded":
        # Only what was received is confirmed; a partial capture is not the payment's amount.
        amount = intent.amount_received if intent.status == "succeeded" else 0
    if status == "attempt_failed" and intent.last_payment_error is not None:
        reason = intent.last_payment_error.message
    else:
        reason = intent.cancellation_reason
    return Notification(
        provider_payment_id=intent.id,
        status=status,
        amount=amount,
        currency=intent.currency,
        reason=reason,
        payment_id=_payment_id((intent.metadata or _StripeMetadata()).payment_id),
        captured_id=intent.id if status == "succeeded" else None,
        names="payment",
        event_id=event.id,
    )


def _razorpay(document: Any) -> Notification | None:
    event = _RazorpayEvent.model_validate(document)
    status = _RAZORPAY_LINK_STATUS.get(event.event)
    if status is not None:
        payload = _RazorpayLinkPayload.model_validate(event.payload)
        link = payload.payment_link.entity
        paid = payload.payment.entity.id if payload.payment is not None else None
        return Notification(
            provider_payment_id=link.id,
            status=status,
            amount=link.amount_paid if status == "succeeded" else link.amount,
            currency=link.currency,
            payment_id=_noted_payment_id(link.notes),
            captured_id=paid if status == "succeeded" else None,
        )
    status = _RAZORPAY_PAYMENT_STATUS.get(event.event)
    if status is None:
        return None
    payment = _RazorpayPayload.model_validate(event.payload).payment.entity
    return Notification(
        provider_payment_id=payment.id,
        status=status,
        amount=payment.amount,
        currency=payment.currency,
        reason=payment.error_description,
        payment_id=_noted_payment_id(payment.notes),
        captured_id=payment.id if status == "succeeded" else None,
        names="payment",
    )


def _noted_payment_id(notes: _RazorpayNotes | list[Any] | None) -> str | None:
    return _payment_id(notes.payment_id) if isinstance(notes, _RazorpayNotes) else None
