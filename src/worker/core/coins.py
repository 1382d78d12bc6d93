"""Coin handlers: one verb per consumed event type, each turning an event into a command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from worker.core.envelope import Envelope, parse_data
from worker.core.events import (
    CoinsAdjustmentRequested,
    CoinsRedemptionRequested,
    CourseCompleted,
    ReferralSucceeded,
)
from worker.core.ledger import CoinCommand


@dataclass(frozen=True)
class Rewards:
    """The configured rewards (COIN_REWARD_COURSE_COMPLETION, COIN_REWARD_REFERRAL) and the
    largest amount one request may state (COIN_MAX_AMOUNT)."""

    course_completion: int
    referral: int
    max_amount: int


def reward_course_completion(event: Envelope, rewards: Rewards) -> CoinCommand:
    data = parse_data(event, CourseCompleted)
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="course_completion",
        reference_id=data.course_id,
        amount=rewards.course_completion,
        requested_amount=None,
        source_event_id=event.id,
        event_source=event.source,
    )


def reward_referral(event: Envelope, rewards: Rewards) -> CoinCommand:
    data = parse_data(event, ReferralSucceeded)
    return CoinCommand(
        student_id=data.referrer_id,
        ledger_type="referral",
        reference_id=data.referral_id,
        amount=data.reward_coins or rewards.referral,
        requested_amount=data.reward_coins,
        source_event_id=event.id,
        exceeds_limit=(data.reward_coins or 0) > rewards.max_amount,
        event_source=event.source,
    )


def adjust_coins(event: Envelope, rewards: Rewards) -> CoinCommand:
    data = parse_data(event, CoinsAdjustmentRequested)
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="manual_adjustment",
        reference_id=data.adjustment_id,
        amount=data.amount,
        requested_amount=data.amount,
        source_event_id=event.id,
        authorized=data.actor.role == "admin",
        exceeds_limit=abs(data.amount) > rewards.max_amount,
        event_source=event.source,
    )


def redeem_coins(event: Envelope, rewards: Rewards) -> CoinCommand:
    data = parse_data(event, CoinsRedemptionRequested)
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="redemption",
        reference_id=data.redemption_id,
        amount=-data.amount,
        requested_amount=data.amount,
        source_event_id=event.id,
        exceeds_limit=data.amount > rewards.max_amount,
        event_source=event.source,
    )


COIN_HANDLERS: dict[str, Callable[[Envelope, Rewards], CoinCommand]] = {
    "course.completed": reward_course_completion,
    "referral.succeeded": reward_referral,
    "coins.adjustment.requested": adjust_coins,
    "coins.redemption.requested": redeem_coins,
}
