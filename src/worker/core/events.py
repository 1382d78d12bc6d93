"""The `data` of every event the worker consumes, validated at the edge into frozen models.

Inbound models tolerate unknown fields (producers may add some); their constraints are the
CONTRACT's: ids of 1..128 characters, integer amounts in the JSON-safe range.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from worker.core.types import (
    Amount,
    Currency,
    Id,
    NonNegativeAmount,
    PositiveAmount,
    Provider,
    Text,
    Utf8,
)


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
    """A redemption of `amount` coins for `item`, or of a catalog item by `item_id` at its price
    (an `amount` given as well must equal it): at least one of `amount` and `item_id`."""

    redemption_id: Id
    student_id: Id
    amount: PositiveAmount | None = None
    item: Text | None = None
    item_id: Id | None = None

    @model_validator(mode="after")
    def _says_what_it_costs(self) -> Self:
        if self.item_id is None and (self.amount is None or self.item is None):
            raise ValueError("a redemption names an item_id, or an amount and an item")
        return self


class CatalogItemUpserted(InboundData):
    """An admin creates a catalog item, or replaces it with a higher `version`."""

    item_id: Id
    version: PositiveAmount
    title: Text
    cost_coins: PositiveAmount
    stock: NonNegativeAmount | None = Field(description="what remains to redeem; null: unlimited")
    active_from: AwareDatetime
    active_until: AwareDatetime | None = None
    per_student_limit: PositiveAmount | None = None
    actor: Actor

    @field_validator("active_from", "active_until")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        # Stored and compared as instants: one that UTC cannot hold (year 1 with a positive
        # offset, year 9999 with a negative one) could be stored but never read back.
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("a time that UTC cannot hold") from None

    @model_validator(mode="after")
    def _active_for_a_while(self) -> Self:
        if self.active_until is not None and self.active_until <= self.active_from:
            raise ValueError("active_until must be after active_from")
        return self


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
