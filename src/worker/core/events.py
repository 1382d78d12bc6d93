"""The `data` of every event the worker consumes, validated at the edge into frozen models.

Inbound models tolerate unknown fields (producers may add some); their constraints are the
CONTRACT's: ids of 1..128 characters, integer amounts in the JSON-safe range.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_validator

from worker.core.types import Amount, Id, PositiveAmount, Text


class InboundData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Actor(InboundData):
    id: Id
    role: Text


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


COIN_EVENTS: dict[str, type[InboundData]] = {
    "course.completed": CourseCompleted,
    "referral.succeeded": ReferralSucceeded,
    "coins.adjustment.requested": CoinsAdjustmentRequested,
    "coins.redemption.requested": CoinsRedemptionRequested,
}
