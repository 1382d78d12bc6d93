"""The `data` of every event the worker consumes, validated at the edge into frozen models.

Inbound models tolerate unknown fields (producers may add some); their constraints are the
CONTRACT's: ids of 1..128 characters, integer amounts in the JSON-safe range.
"""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from worker.core.types import Amount, Currency, Id, PositiveAmount, Provider, Text, Utf8


class InboundData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Actor(InboundData):
    id: Id
    role: Text
    # Read as any JSON value: without ADMIN_ASSERTION_PUBLIC_KEYS it is ignored, as any other
    # extra member is; with them, anything but a valid JWS is `not_authorized`, not bad input.
    assertion: Any = Field(
        default=None,
        description="A compact JWS (ES256 or EdDSA) proving the request, required when the "
        "worker has ADMIN_ASSERTION_PUBLIC_KEYS (docs/security.md).",
    )


class CourseCompleted(InboundData):
    student_id: Id
    course_id: Id
    completed_at: AwareDatetime
    course_tier: Text | None = None


class ReferralSucceeded(InboundData):
    referral_id: Id
    referrer_id: Id
    referred_student_id: Id
    reward_coins: PositiveAmount | None = None


class CoinsAdjustmentRequested(InboundData):
    adjustment_id: Id
    student_id: Id
    amount: Amount
    reason: Text
    actor: Actor

    @field_validator("amount")
    @classmethod
    def _not_zero(cls, amount: int) -> int:
        if amount == 0:
            raise ValueError("an adjustment amount must not be zero")
        return amount


class CoinsRedemptionRequested(InboundData):
    redemption_id: Id
    student_id: Id
    amount: PositiveAmount
    item: Text


class PaymentRequested(InboundData):
    payment_id: Id
    student_id: Id
    course_id: Id
    amount: PositiveAmount
    currency: Currency
    description: Text | None = None
    # The provider to pay with; absent: the worker's PAYMENT_PROVIDER.
    provider: Provider | None = None


class PaymentWebhookReceived(InboundData):
    """A provider's webhook as the ingress received it: verified and parsed by the worker."""

    provider: Provider
    headers: dict[Utf8, Utf8] = Field(
        description="The provider's HTTP headers; names compare without regard to case."
    )
    body: Utf8 = Field(description="The raw request body, exactly as signed (UTF-8).")


class PaymentRefundRequested(InboundData):
    refund_id: Id
    payment_id: Id
    reason: Text
    actor: Actor
