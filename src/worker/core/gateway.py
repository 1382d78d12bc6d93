"""What the worker asks of a payment provider, and how a provider's answer is classified.

Provider calls never run inside a database transaction: a payment is recorded when requested,
its session is opened afterwards (`worker.gateway_calls`), and the answer is written back in a
transaction of its own. A call may therefore be repeated (a retry, a crash before the answer was
written), so each carries an idempotency key derived from the payment or refund id: a repeat
answers the same session or refund.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from worker.core import money
from worker.core.results import derived_id
from worker.core.types import Provider
from worker.core.values import value_type


@value_type
class SessionRequest:
    """Open a checkout session for a payment, payable until `expires_at`."""

    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None
    expires_at: datetime

    @property
    def idempotency_key(self) -> str:
        return derived_id("gateway", "session", self.payment_id)


@value_type
class Session:
    """What the provider opened: its id for the payment, the URL the student pays at, and when
    the session stops taking payment."""

    provider_payment_id: str
    payment_url: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Refund a succeeded payment in full."""

    refund_id: str
    payment_id: str
    provider_payment_id: str | None
    # The provider's id of the captured money when a webhook told it; else the gateway asks.
    captured_id: str | None
    amount: int
    currency: str
    reason: str
    # An earlier attempt may have reached the provider: look for its refund before making one,
    # so a repeat after the provider's idempotency window still refunds once.
    repeat: bool = False

    @property
    def idempotency_key(self) -> str:
        return derived_id("gateway", "refund", self.refund_id)


@dataclass(frozen=True, slots=True)
class RefundReceipt:
    provider_refund_id: str


class GatewayRefusal(Exception):
    """The provider refused the call (or cannot be asked: no credentials, an unsupported
    currency). Final: the payment fails, the refund is rejected, with this message as reason."""


class GatewayUnavailable(Exception):
    """A failure the provider marks as passing (a timeout, a 5xx, a 429): try again later, not
    before `retry_after` seconds when the provider said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Gateway(Protocol):
    """A payment provider. Both calls are idempotent by the request's key."""

    provider: Provider

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        """`wanted`, moved into the range of session lifetimes the provider accepts for a
        session asked for at `now`. Asked once per call: every repeat asks the same."""
        ...

    async def open_session(self, request: SessionRequest) -> Session: ...

    async def refund(self, request: RefundRequest) -> RefundReceipt: ...


class InstantGateway(Protocol):
    """A provider whose answers are computed, not asked for (the mock): deterministic, no I/O,
    so a batch takes them in its own transaction instead of queueing a call."""

    def session_now(self, request: SessionRequest) -> Session: ...

    def refund_now(self, request: RefundRequest) -> RefundReceipt: ...


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """An HTTP `Retry-After` value (seconds, or an HTTP date) as seconds from `now`."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Refused:
    """A provider's refusal as the rules see it: final, with the provider's reason."""

    reason: str


def provider_amount(provider: Provider, amount: int, currency: str) -> int:
    """`amount` (ISO 4217 minor units) in `provider`'s units; a currency or amount the provider
    cannot take is its refusal, known before any call."""
    try:
        return money.to_provider(provider, amount, currency)
    except money.UnsupportedAmount as refused:
        raise GatewayRefusal(str(refused)) from None
