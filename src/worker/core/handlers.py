"""Handlers: one verb per consumed event type, each turning a validated event into a command.

A handler receives the envelope, its `data` already parsed into the model the registry names
(`worker.core.registry`), and the configured policies; it returns what the event asks for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from worker.core.assertions import AdminAssertions, Instant
from worker.core.catalog import CatalogItem, UpsertItem
from worker.core.coins import CoinCommand, CourseReward
from worker.core.envelope import Envelope
from worker.core.events import (
    Actor,
    CatalogItemUpserted,
    CoinsAdjustmentRequested,
    CoinsRedemptionRequested,
    CourseCompleted,
    PaymentRefundRequested,
    PaymentRequested,
    PaymentWebhookReceived,
    ReferralSucceeded,
)
from worker.core.payments import (
    IgnoreWebhook,
    OpenPayment,
    PaymentCommand,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
)
from worker.core.rules import CoinRules
from worker.core.signatures import SignatureError, WebhookVerifier
from worker.core.webhooks import parse_notification

Command = CoinCommand | PaymentCommand | UpsertItem


@dataclass(frozen=True)
class Rewards:
    """The configured rewards (COIN_REWARD_COURSE_COMPLETION, COIN_REWARD_REFERRAL) and the
    largest amount one request may state (COIN_MAX_AMOUNT)."""

    course_completion: int
    referral: int
    max_amount: int


@dataclass(frozen=True)
class Policies:
    """What handlers need from configuration: the coin rewards, the webhook secrets and the
    keys admin assertions are checked with (None: the role alone is checked)."""

    rewards: Rewards
    webhooks: WebhookVerifier
    assertions: AdminAssertions | None = None
    # COIN_RULES_FILE's rules; None: the fixed course reward of `rewards`.
    rules: CoinRules | None = None
    # How long credited coins last (COIN_EXPIRY_DAYS); None: for ever.
    coin_lifetime: timedelta | None = None


def _refused_privilege(
    event: Envelope, actor: Actor, bound: Mapping[str, object], policies: Policies
) -> str | None:
    """None when `actor` may ask for this privileged request; otherwise why not. Only `admin`
    is honoured; with assertion keys set, only with an assertion binding the request."""
    if actor.role != "admin":
        return f"actor role {actor.role!r} is not admin"
    if policies.assertions is None:
        return None
    return policies.assertions.refusal(actor.assertion, actor.id, bound, event.received_at)


# ---------------------------------------------------------------------------- coins


def reward_course_completion(
    event: Envelope, data: CourseCompleted, policies: Policies
) -> CoinCommand:
    """The fixed reward; under coin rules the base of the course's tier, which the student's
    tier multiplies when the credit is decided (`CoinCommand.rewarded`)."""
    rules = policies.rules
    reward = None
    amount = policies.rewards.course_completion
    if rules is not None:
        amount = rules.course_reward(data.course_tier)
        reward = CourseReward(rules, data.course_tier, amount, _streak_day(data, rules))
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="course_completion",
        reference_id=data.course_id,
        amount=amount,
        requested_amount=None,
        source_event_id=event.id,
        event_type=event.type,
        event_source=event.source,
        reward=reward,
    )


def _streak_day(data: CourseCompleted, rules: CoinRules) -> date | None:
    """The UTC day a streak counts, when the rules have streaks: none for a completion at the
    calendar's very ends (year 1 or 9999), whose day or its neighbour Python cannot hold."""
    if not rules.streaks:
        return None
    try:
        day = data.completed_at.astimezone(UTC).date()
    except OverflowError:
        return None
    return day if date.min < day < date.max else None


def reward_referral(event: Envelope, data: ReferralSucceeded, policies: Policies) -> CoinCommand:
    rewards = policies.rewards
    return CoinCommand(
        student_id=data.referrer_id,
        ledger_type="referral",
        reference_id=data.referral_id,
        amount=data.reward_coins or rewards.referral,
        requested_amount=data.reward_coins,
        source_event_id=event.id,
        event_type=event.type,
        exceeds_limit=(data.reward_coins or 0) > rewards.max_amount,
        event_source=event.source,
    )


def adjust_coins(
    event: Envelope, data: CoinsAdjustmentRequested, policies: Policies
) -> CoinCommand:
    bound = {"adjustment_id": data.adjustment_id, "student_id": data.student_id,
             "amount": data.amount}  # fmt: skip
    refused = _refused_privilege(event, data.actor, bound, policies)
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="manual_adjustment",
        reference_id=data.adjustment_id,
        amount=data.amount,
        requested_amount=data.amount,
        source_event_id=event.id,
        event_type=event.type,
        authorized=refused is None,
        exceeds_limit=abs(data.amount) > policies.rewards.max_amount,
        event_source=event.source,
        actor=(data.actor.id, data.actor.role),
        unauthorized_because=refused,
    )


def redeem_coins(
    event: Envelope, data: CoinsRedemptionRequested, policies: Policies
) -> CoinCommand:
    """A redemption of its `amount`; of a catalog item, of the item's price, which is found
    when the debit is decided (`amount` is 0 until then)."""
    return CoinCommand(
        student_id=data.student_id,
        ledger_type="redemption",
        reference_id=data.redemption_id,
        amount=-(data.amount or 0),
        requested_amount=data.amount,
        source_event_id=event.id,
        event_type=event.type,
        exceeds_limit=(data.amount or 0) > policies.rewards.max_amount,
        event_source=event.source,
        item_id=data.item_id,
        price_cap=None if data.item_id is None else policies.rewards.max_amount,
    )


# ---------------------------------------------------------------------------- catalog


def _unix(moment: datetime | None) -> Instant | None:
    return None if moment is None else Instant(moment.timestamp())


def upsert_catalog_item(
    event: Envelope, data: CatalogItemUpserted, policies: Policies
) -> UpsertItem:
    # Every field the item is stored with: an assertion cannot be reused for another stock,
    # limit or window of the same version. Times as Unix seconds.
    bound = {
        "item_id": data.item_id, "version": data.version, "title": data.title,
        "cost_coins": data.cost_coins, "stock": data.stock,
        "active_from": _unix(data.active_from), "active_until": _unix(data.active_until),
        "per_student_limit": data.per_student_limit,
    }  # fmt: skip
    refused = _refused_privilege(event, data.actor, bound, policies)
    item = CatalogItem(
        item_id=data.item_id,
        version=data.version,
        title=data.title,
        cost_coins=data.cost_coins,
        stock=data.stock,
        active_from=data.active_from,
        active_until=data.active_until,
        per_student_limit=data.per_student_limit,
    )
    return UpsertItem(
        item=item,
        source_event_id=event.id,
        event_type=event.type,
        event_source=event.source,
        actor=(data.actor.id, data.actor.role),
        authorized=refused is None,
        unauthorized_because=refused,
    )


# ---------------------------------------------------------------------------- payments


def open_payment(event: Envelope, data: PaymentRequested, _: Policies) -> PaymentCommand:
    return OpenPayment(
        payment_id=data.payment_id,
        student_id=data.student_id,
        course_id=data.course_id,
        amount=data.amount,
        currency=data.currency,
        description=data.description,
        source_event_id=event.id,
        event_type=event.type,
        event_source=event.source,
        provider=data.provider,
    )


def receive_webhook(
    event: Envelope, data: PaymentWebhookReceived, policies: Policies
) -> PaymentCommand:
    """Check the signature before anything else; only then read what the body reports."""
    try:
        policies.webhooks.verify(
            data.provider, data.headers, data.body, received_at=event.received_at
        )
    except SignatureError as refused:
        return RefuseWebhook(
            data.provider, refused.reason, str(refused), event.id, event.type, event.subject,
            event.source,
        )  # fmt: skip
    notification = parse_notification(data.provider, data.body, data.headers)
    if notification is None:
        return IgnoreWebhook(data.provider, event.id, event.type)
    return ReportStatus(
        data.provider, notification, event.id, event.type, event.subject, event.source
    )


def refund_payment(
    event: Envelope, data: PaymentRefundRequested, policies: Policies
) -> PaymentCommand:
    bound = {"refund_id": data.refund_id, "payment_id": data.payment_id}
    refused = _refused_privilege(event, data.actor, bound, policies)
    return RefundPayment(
        refund_id=data.refund_id,
        payment_id=data.payment_id,
        reason=data.reason,
        actor_id=data.actor.id,
        actor_role=data.actor.role,
        authorized=refused is None,
        unauthorized_because=refused,
        source_event_id=event.id,
        event_type=event.type,
        subject=event.subject,
        event_source=event.source,
    )
