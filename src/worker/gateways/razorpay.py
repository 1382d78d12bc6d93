"""Razorpay Payment Links through the official `razorpay` SDK (CONTRACT section 5).

A payment opens a Payment Link (amount, currency, the payment id as `reference_id` and in
`notes`); the link's id is the provider payment id and its `short_url` the payment URL. Refunds
go to the link's captured payment. Razorpay's idempotency for links is the `reference_id`, which
it keeps unique: a repeated create is refused, and the worker then finds the link it made.

The SDK is synchronous (requests): its calls run on a small thread pool of their own, so a hung
Razorpay can never take the threads the event loop needs (DNS lookups of the Kafka client).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import razorpay
import requests

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
from worker.core.results import derived_id
from worker.core.types import Provider

T = TypeVar("T")

# Razorpay keeps a `reference_id` to 40 characters; a longer payment id is sent as a derived one
# (the payment id itself is in `notes` either way).
REFERENCE_MAX = 40
# A link must expire at least 15 minutes after it is made and at most six months after (with a
# minute of margin for the request's travel).
LINK_MIN_TTL = timedelta(minutes=16)
LINK_MAX_TTL = timedelta(days=180)


def reference_id(payment_id: str) -> str:
    """The `reference_id` of a payment's link: the payment id when Razorpay can hold it."""
    if len(payment_id) <= REFERENCE_MAX and payment_id.isascii():
        return payment_id
    return "pw-" + derived_id("razorpay-reference", payment_id).replace("-", "")


def link_expiry(wanted: datetime, now: datetime) -> datetime:
    return min(max(wanted, now + LINK_MIN_TTL), now + LINK_MAX_TTL)


class _Session(requests.Session):
    """A requests session with a timeout on every call, keeping the last response's status and
    `Retry-After`: the SDK's errors carry only Razorpay's message."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout
        self.status: int | None = None
        self.retry_after: str | None = None

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = super().request(*args, **kwargs)
        self.status = response.status_code
        self.retry_after = response.headers.get("Retry-After")
        return response


class RazorpayGateway:
    provider: Provider = "razorpay"

    def __init__(
        self,
        key_id: str,
        key_secret: str,
        api_base: str | None,
        timeout: float,
        return_url: str | None,
        concurrency: int,
    ) -> None:
        self._auth = (key_id, key_secret)
        self._api_base = api_base.rstrip("/") if api_base else None
        self._timeout = timeout
        self._return_url = return_url
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="razorpay")

    def session_deadline(self, wanted: datetime, now: datetime) -> datetime:
        return link_expiry(wanted, now)

    async def open_session(self, request: SessionRequest) -> Session:
        amount = provider_amount("razorpay", request.amount, request.currency)
        reference = reference_id(request.payment_id)
        expires_at = request.expires_at
        data: dict[str, Any] = {
            "amount": amount,
            "currency": money.provider_currency("razorpay", request.currency),
            "accept_partial": False,
            "reference_id": reference,
            "description": (request.description or f"Course {request.course_id}")[:2048],
            "expire_by": int(expires_at.timestamp()),
            "notes": {
                "payment_id": request.payment_id,
                "student_id": request.student_id,
                "course_id": request.course_id,
            },
        }
        if self._return_url:
            data["callback_url"] = self._return_url
            data["callback_method"] = "get"
        try:
            link = await self._call(lambda client: client.payment_link.create(data))
        except GatewayRefusal:
            # Refused, perhaps because an earlier attempt made the link: find it by reference.
            link = await self._link_by_reference(reference, request.payment_id)
            if link is None:
                raise
        return Session(
            provider_payment_id=link["id"],
            payment_url=link["short_url"],
            expires_at=datetime.fromtimestamp(link.get("expire_by") or expires_at.timestamp(), UTC),
        )

    async def refund(self, request: RefundRequest) -> RefundReceipt:
        amount = provider_amount("razorpay", request.amount, request.currency)
        captured = request.captured_id or await self._captured_payment(request.provider_payment_id)
        if request.repeat:
            earlier = await self._earlier_refund(captured, request.refund_id)
            if earlier is not None:
                return RefundReceipt(earlier)
        data = {
            "amount": amount,
            "speed": "normal",
            "notes": {"refund_id": request.refund_id, "payment_id": request.payment_id},
        }
        # Razorpay's refund idempotency: the same key refunds once, answering the same refund.
        headers = {"X-Refund-Idempotency": request.idempotency_key}
        try:
            refund = await self._call(
                lambda client: client.payment.refund(captured, data, headers=headers)
            )
        except GatewayRefusal:
            # Refused, perhaps because an earlier attempt's refund went through (the payment is
            # fully refunded already): that refund is this one.
            earlier = await self._earlier_refund(captured, request.refund_id)
            if earlier is None:
                raise
            return RefundReceipt(earlier)
        if refund.get("status") == "failed":
            raise GatewayRefusal(f"razorpay: the refund {refund.get('id')} failed")
        return RefundReceipt(refund["id"])

    async def _link_by_reference(self, reference: str, payment_id: str) -> dict[str, Any] | None:
        found = await self._call(
            lambda client: client.payment_link.all({"reference_id": reference})
        )
        for link in found.get("payment_links", []):
            if (link.get("notes") or {}).get("payment_id") == payment_id:
                return dict(link)
        return None

    async def _captured_payment(self, link_id: str | None) -> str:
        """The captured payment of a paid link, which Razorpay's refunds name."""
        if link_id is None:
            raise GatewayRefusal("razorpay: the payment has no payment link to refund")
        link = await self._call(lambda client: client.payment_link.fetch(link_id))
        for payment in link.get("payments") or []:
            if payment.get("status") == "captured":
                return str(payment["payment_id"])
        raise GatewayRefusal(f"razorpay: payment link {link_id} has no captured payment")

    async def _earlier_refund(self, payment: str, refund_id: str) -> str | None:
        found = await self._call(lambda client: client.payment.fetch_multiple_refund(payment))
        for refund in found.get("items", []):
            if (refund.get("notes") or {}).get("refund_id") == refund_id:
                return str(refund["id"])
        return None

    async def _call(self, call: Callable[[razorpay.Client], T]) -> T:
        """Run one SDK call on the gateway's threads with a fresh session (the SDK's client is
        not shared between threads); classify what fails."""
        session = _Session(self._timeout)
        options = {"base_url": self._api_base} if self._api_base else {}
        client = razorpay.Client(session=session, auth=self._auth, **options)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._threads, call, client)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise GatewayUnavailable(f"razorpay: {type(error).__name__}: {error}") from error
        except Exception as error:
            raise _classify(error, session) from error
        finally:
            session.close()


def _classify(error: Exception, session: _Session) -> Exception:
    """A 4xx is Razorpay's refusal; anything else (no answer, 429, 5xx, an answer the SDK could
    not read) leaves the outcome unknown, so the call is tried again, by the same key."""
    message = f"razorpay: {error}" if str(error) else f"razorpay: {type(error).__name__}"
    status = session.status
    # 409: a request with the same idempotency key is still being processed (try again); 429:
    # too many requests.
    if status is not None and 400 <= status < 500 and status not in (409, 429):
        return GatewayRefusal(message)
    retry_after = retry_after_seconds(session.retry_after, datetime.now(UTC))
    return GatewayUnavailable(f"{message} (HTTP {status or 'no answer'})", retry_after)
