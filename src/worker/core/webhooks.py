"""What a verified webhook body reports, per provider (CONTRACT section 5).

Each provider's body becomes one `Notification`: which payment (by provider payment id), which
status, the amount and currency. A body that is not what its provider sends is bad input; an
event type the worker does not act on (Stripe sends many) is `None`: acknowledged, not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from worker.core import jsontext
from worker.core.envelope import BadInputError
from worker.core.types import Currency, Id, NonNegativeAmount, Provider, Text

ReportedStatus = Literal["succeeded", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class Notification:
    provider_payment_id: str
    status: ReportedStatus
    amount: int
    currency: str
    reason: str | None = None


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# mock: {"id": ..., "type": "payment.succeeded", "data": {"provider_payment_id", "amount", ...}}
class _MockData(_Body):
    provider_payment_id: Id
    amount: NonNegativeAmount
    currency: Currency
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


# stripe: an Event whose data.object is a PaymentIntent.
class _StripeEvent(_Body):
    id: Id
    type: str
    data: dict[str, Any]


class _StripeError(_Body):
    message: Text | None = None


class _StripePaymentIntent(_Body):
    id: Id
    amount: NonNegativeAmount
    currency: Currency
    last_payment_error: _StripeError | None = None
    cancellation_reason: Text | None = None


_STRIPE_STATUS: dict[str, ReportedStatus] = {
    "payment_intent.succeeded": "succeeded",
    "payment_intent.payment_failed": "failed",
    "payment_intent.canceled": "cancelled",
}


# razorpay: {"event": "payment.captured", "payload": {"payment": {"entity": {...}}}}
class _RazorpayPayment(_Body):
    id: Id
    amount: NonNegativeAmount
    currency: Currency
    error_description: Text | None = None


class _RazorpayPaymentWrapper(_Body):
    entity: _RazorpayPayment


class _RazorpayPayload(_Body):
    payment: _RazorpayPaymentWrapper


class _RazorpayEvent(_Body):
    event: str
    payload: dict[str, Any]


_RAZORPAY_STATUS: dict[str, ReportedStatus] = {
    "payment.captured": "succeeded",
    "payment.failed": "failed",
}


def parse_notification(provider: Provider, body: str) -> Notification | None:
    """What the (already verified) `body` reports; None for an event type not acted on."""
    document = _json(body)
    try:
        if provider == "mock":
            return _mock(document)
        if provider == "stripe":
            return _stripe(document)
        return _razorpay(document)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise BadInputError(f"{provider} webhook body: {details}") from None


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
    )


def _stripe(document: Any) -> Notification | None:
    event = _StripeEvent.model_validate(document)
    status = _STRIPE_STATUS.get(event.type)
    if status is None:
        return None
    intent = _StripePaymentIntent.model_validate(event.data.get("object"))
    if status == "failed" and intent.last_payment_error is not None:
        reason = intent.last_payment_error.message
    else:
        reason = intent.cancellation_reason
    return Notification(intent.id, status, intent.amount, intent.currency, reason)


def _razorpay(document: Any) -> Notification | None:
    event = _RazorpayEvent.model_validate(document)
    status = _RAZORPAY_STATUS.get(event.event)
    if status is None:
        return None
    payment = _RazorpayPayload.model_validate(event.payload).payment.entity
    return Notification(
        payment.id, status, payment.amount, payment.currency, payment.error_description
    )
