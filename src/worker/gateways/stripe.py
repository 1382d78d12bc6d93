"""Stripe Checkout through the official `stripe` SDK (CONTRACT section 5).

A payment opens a Checkout Session (mode `payment`, one line item); the session's id is the
provider payment id and its `url` the payment URL. Refunds use the Refunds API on the session's
payment intent. Every call carries an `Idempotency-Key` derived from the payment or refund id.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import stripe

from worker.core import money
from worker.core.gateway import (
    GatewayRefusal,
    GatewayUnavailable,
    RefundReceipt,
    RefundRequest,
    Session,
    SessionRequest,
    provider_amount,
    retry_after_seconds,
)
from worker.core.types import Provider

T = TypeVar("T")

# Stripe takes a Checkout Session's `expires_at` between 30 minutes and 24 hours after it creates
# the session. The lower bound gets a minute of margin for the time the request takes to arrive.
SESSION_MIN_TTL = timedelta(minutes=31)
SESSION_MAX_TTL = timedelta(hours=24) - timedelta(minutes=1)


def session_expiry(wanted: datetime, now: datetime) -> datetime:
    """`wanted`, moved into the range Stripe accepts for a session created at `now`."""
    return min(max(wanted, now + SESSION_MIN_TTL), now + SESSION_MAX_TTL)


class StripeGateway:
    provider: Provider = "stripe"

    def __init__(
        self, api_key: str, api_base: str | None, timeout: float, return_url: str | None
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=stripe.HTTPXClient(timeout=timeout),
            max_network_retries=0,  # the worker retries, by its own policy
        )
        self._return_url = return_url

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return session_expiry(wanted, now)

    async def open_session(self, request: SessionRequest) -> Session:
        """Everything sent derives from the request alone, so a repeat under the same
        idempotency key sends the same parameters, as Stripe requires."""
        amount = provider_amount("stripe", request.amount, request.currency)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": money.provider_currency("stripe", request.currency),
                        "unit_amount": amount,
                        "product_data": {
                            "name": request.description or f"Course {request.course_id}"
                        },
                    },
                }
            ],
            "client_reference_id": request.payment_id,
            "metadata": _metadata(request.payment_id, request.student_id, request.course_id),
            # The payment intent carries the payment id too, so its webhooks find the payment.
            "payment_intent_data": {"metadata": {"payment_id": request.payment_id}},
            "expires_at": int(request.expires_at.timestamp()),
        }
        if self._return_url:
            params["success_url"] = self._return_url
        session = await _call(
            self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": request.idempotency_key},
            )
        )
        if not session.url:
            raise GatewayRefusal(f"stripe: checkout session {session.id} has no payment URL")
        return Session(
            provider_payment_id=session.id,
            payment_url=session.url,
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        amount = provider_amount("stripe", request.amount, request.currency)
        intent = request.captured_id or await self._intent_of(request.provider_payment_id)
        if request.repeat:
            earlier = await self._earlier_refund(intent, request.refund_id)
            if earlier is not None:
                return RefundReceipt(earlier)
        try:
            refund = await self._create_refund(request, intent, amount)
        except GatewayRefusal:
            # Refused, perhaps because an earlier attempt's refund went through (the charge is
            # refunded already): that refund is this one.
            earlier = await self._earlier_refund(intent, request.refund_id)
            if earlier is None:
                raise
            return RefundReceipt(earlier)
        if refund.status in ("failed", "canceled"):
            why = refund.failure_reason or refund.status
            raise GatewayRefusal(f"stripe: the refund {refund.status}: {why}")
        return RefundReceipt(refund.id)

    async def _create_refund(
        self, request: RefundRequest, intent: str, amount: int
    ) -> stripe.Refund:
        return await _call(
            self._client.v1.refunds.create_async(
                params={
                    "payment_intent": intent,
                    "amount": amount,
                    "reason": "requested_by_customer",
                    "metadata": {"refund_id": request.refund_id, "payment_id": request.payment_id},
                },
                options={"idempotency_key": request.idempotency_key},
            )
        )

    async def _earlier_refund(self, intent: str, refund_id: str) -> str | None:
        """The id of a refund an earlier attempt made for `refund_id`, if Stripe has one."""
        refunds = await _call(
            self._client.v1.refunds.list_async(params={"payment_intent": intent, "limit": 100})
        )
        for refund in refunds.data:
            if _metadata_value(refund.metadata, "refund_id") == refund_id:
                return refund.id
        return None

    async def _intent_of(self, session_id: str | None) -> str:
        """The payment intent of a Checkout Session, which Stripe's refunds name."""
        if session_id is None:
            raise GatewayRefusal("stripe: the payment has no checkout session to refund")
        session = await _call(self._client.v1.checkout.sessions.retrieve_async(session_id))
        intent = session.payment_intent
        if intent is None:
            raise GatewayRefusal(f"stripe: checkout session {session_id} has no payment to refund")
        return intent if isinstance(intent, str) else intent.id


def _metadata_value(metadata: Any, name: str) -> str | None:
    """One value of a Stripe object's `metadata` (a loosely typed mapping in the SDK)."""
    return str(metadata[name]) if metadata and name in metadata else None


def _metadata(payment_id: str, student_id: str, course_id: str) -> dict[str, str]:
    return {"payment_id": payment_id, "student_id": student_id, "course_id": course_id}


async def _call(request: Awaitable[T]) -> T:
    """Await a Stripe call; a failure Stripe marks as passing raises GatewayUnavailable, any
    other refusal GatewayRefusal with Stripe's message."""
    try:
        return await request
    except stripe.StripeError as error:
        raise _classify(error) from error


def _classify(error: stripe.StripeError) -> Exception:
    message = f"stripe: {error.user_message or type(error).__name__}"
    headers = error.headers or {}
    should_retry = (_header(headers, "stripe-should-retry") or "").lower()
    retry_after = retry_after_seconds(_header(headers, "retry-after"), datetime.now(UTC))
    if should_retry == "true":
        return GatewayUnavailable(message, retry_after)
    if should_retry == "false":
        return GatewayRefusal(message)
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return GatewayUnavailable(message, retry_after)
    if error.code in ("idempotency_key_in_use", "lock_timeout"):
        # The same key is in flight on another attempt (or an object is locked): try again.
        return GatewayUnavailable(message, retry_after)
    if error.http_status is not None and error.http_status >= 500:
        return GatewayUnavailable(message, retry_after)
    return GatewayRefusal(message)


def _header(headers: Any, name: str) -> str | None:
    """A response header's value, its name compared without regard to case."""
    for key, value in dict(headers).items():
        if key.lower() == name:
            return str(value).strip()
    return None
