"""The payment gateway interface, and the mock gateway behind it (the default and only one yet).

A gateway opens checkout sessions and refunds payments. Its calls are made inside the batch's
database transaction and may be repeated when that transaction is retried, so a real gateway
must pass the payment id (or refund id) as its idempotency key: a repeat answers the same
session or refund. The mock gateway is deterministic, so it needs no key and no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from worker.core.results import derived_id
from worker.core.types import Provider


@dataclass(frozen=True, slots=True)
class SessionRequest:
    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None


@dataclass(frozen=True, slots=True)
class Session:
    provider: Provider
    provider_payment_id: str
    payment_url: str
    expires_at: datetime


class Gateway(Protocol):
    """What the worker needs from a payment provider."""

    async def open_session(self, request: SessionRequest, now: datetime) -> Session:
        """Open a checkout session for `request`; the same payment id gives the same session."""
        ...

    async def refund(self, provider_payment_id: str, amount: int, refund_id: str) -> None:
        """Refund a succeeded payment in full; the same refund id refunds once."""
        ...


class MockGateway:
    """Sessions with ids derived from the payment id, at `<url_base>/<provider payment id>`."""

    provider: Provider = "mock"

    def __init__(self, url_base: str, ttl: timedelta) -> None:
        self._url_base = url_base.rstrip("/")
        self._ttl = ttl

    async def open_session(self, request: SessionRequest, now: datetime) -> Session:
        provider_payment_id = "mock_pay_" + derived_id("mock-session", request.payment_id)
        return Session(
            provider=self.provider,
            provider_payment_id=provider_payment_id,
            payment_url=f"{self._url_base}/{provider_payment_id}",
            expires_at=now + self._ttl,
        )

    async def refund(self, provider_payment_id: str, amount: int, refund_id: str) -> None:
        """The mock's refunds always succeed; there is no money to move."""
