"""The mock gateway: deterministic sessions and refunds, no network (the default provider)."""

from __future__ import annotations

from datetime import datetime

from worker.core.gateway import (
    GatewayRefusal,
    RefundReceipt,
    RefundRequest,
    Session,
    SessionRequest,
)
from worker.core.results import derived_id
from worker.core.types import Provider


class MockGateway:
    """Sessions with ids derived from the payment id, at `<url_base>/<provider payment id>`.
    Instant: batches take its answers in their own transaction (no call is queued)."""

    provider: Provider = "mock"

    def __init__(self, url_base: str) -> None:
        self._url_base = url_base.rstrip("/")

    def session_now(self, request: SessionRequest) -> Session:
        provider_payment_id = "mock_pay_" + derived_id("mock-session", request.payment_id)
        return Session(
            provider_payment_id=provider_payment_id,
            payment_url=f"{self._url_base}/{provider_payment_id}",
            expires_at=request.expires_at,
        )

    def refund_now(self, request: RefundRequest) -> RefundReceipt:
        """The mock's refunds always succeed; there is no money to move."""
        return RefundReceipt("mock_refund_" + derived_id("mock-refund", request.refund_id))

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return wanted

    async def open_session(self, request: SessionRequest) -> Session:
        return self.session_now(request)

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        return self.refund_now(request)


class UnconfiguredGateway:
    """A provider the worker has no credentials for: every call is refused, saying which
    variable is missing, so its payments fail with a clear reason instead of a crash."""

    def __init__(self, provider: Provider, missing: str) -> None:
        self.provider = provider
        self._reason = f"{provider} is not configured on this worker ({missing} is not set)"

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return wanted

    async def open_session(self, request: SessionRequest) -> Session:
        raise GatewayRefusal(self._reason)

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        raise GatewayRefusal(self._reason)
