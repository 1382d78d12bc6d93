"""Result events the worker publishes: outbound data models and their envelopes.

Outbound models forbid unknown fields. A result's id is a UUIDv5 of what it reports, so the
same outcome always carries the same id and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.core import cloudevents
from worker.core.messages import OutgoingMessage
from worker.core.types import JSON_SAFE_MAX, Id, NonNegativeAmount, PositiveAmount, Provider

SOURCE = "payment-worker"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payment-worker:results")
_NAMESPACE_BYTES = _NAMESPACE.bytes

LedgerType = Literal[
    "course_completion", "referral", "manual_adjustment", "redemption", "streak_bonus"
]
# Every type of ledger entry: the requested ones and the expiry of a lot's coins.
EntryType = LedgerType | Literal["expiry"]
CoinRejection = Literal[
    "insufficient_balance",
    "idempotency_conflict",
    "not_authorized",
    "limit_exceeded",
    # A redemption by `item_id` (CONTRACT section 10).
    "price_mismatch",
    "out_of_stock",
    "item_unavailable",
    "limit_reached",
]
CatalogRejection = Literal["not_authorized", "stale_version"]
PaymentStatus = Literal["initiated", "succeeded", "failed", "cancelled", "expired", "refunded"]
PaymentRejection = Literal[
    "idempotency_conflict",
    "invalid_signature",
    "stale_signature",
    "unknown_payment",
    "invalid_transition",
    "amount_mismatch",
    "not_authorized",
    # A provider refused a refund; `detail` carries its reason.
    "provider_refused",
]


class OutboundData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _is_none(value: object) -> bool:
    return value is None


class RuleApplied(OutboundData):
    """How a course completion's reward was reckoned under the coin rules (CONTRACT 10)."""

    version: int = Field(ge=1, description="the rules file's version")
    course_tier: str | None = Field(description="the event's course_tier, as given")
    base: PositiveAmount = Field(description="the course reward for that tier")
    tier: str | None = Field(description="the student's tier before the credit; null: none")
    multiplier: float = Field(ge=1, description="the tier's multiplier (1 without a tier)")


class CoinsMoved(OutboundData):
    """`data` of `coins.credited` and `coins.debited`; `amount` is always positive."""

    transaction_id: str
    student_id: Id
    type: LedgerType
    reference_id: Id
    amount: PositiveAmount
    balance_after: NonNegativeAmount
    source_event_id: Id
    # `rule` and `item_id` are left out of the JSON when None, not written as null: a credit
    # without coin rules, or a debit of no catalog item, reads as it always did.
    rule: RuleApplied | None = Field(
        default=None,
        exclude_if=_is_none,
        description="a course completion's credit under COIN_RULES_FILE: how it was reckoned "
        "(absent without a rules file)",
    )
    item_id: Id | None = Field(
        default=None,
        exclude_if=_is_none,
        description="a redemption of a catalog item: the item (absent otherwise)",
    )


def coins_moved_json(
    *,
    transaction_id: str,
    student_id: str,
    type: LedgerType,
    reference_id: str,
    amount: int,
    balance_after: int,
    source_event_id: str,
    rule: RuleApplied | None = None,
    item_id: str | None = None,
) -> bytes:
    """`CoinsMoved(...).model_dump_json()`, encoded: the same bytes (a test holds them equal)
    in a fifth of the time, without building the model; one is built for every credit and debit.

    The amounts are checked as the model checks them. The strings are not: they are a coin
    command's, whose event was validated on the way in (the type is the command's own).
    """
    if not (
        amount.__class__ is int  # strict, as the model's: not a bool, not a float
        and balance_after.__class__ is int
        and 1 <= amount <= JSON_SAFE_MAX
        and 0 <= balance_after <= JSON_SAFE_MAX
    ):
        raise ValueError(f"a coin result's amount {amount} or balance {balance_after} is invalid")
    quoted = cloudevents.json_string
    text = (
        f'{{"transaction_id":{quoted(transaction_id)},"student_id":{quoted(student_id)},'
        f'"type":{quoted(type)},"reference_id":{quoted(reference_id)},"amount":{amount},'
        f'"balance_after":{balance_after},"source_event_id":{quoted(source_event_id)}'
    )
    if rule is not None:
        text += f',"rule":{rule.model_dump_json()}'
    if item_id is not None:
        text += f',"item_id":{quoted(item_id)}'
    return (text + "}").encode()


class CoinsExpired(OutboundData):
    """`data` of `coins.expired`: what was left of a lot when it expired (CONTRACT section 10);
    `reference_id` is the credit's `transaction_id`, `amount` is positive."""

    transaction_id: str
    student_id: Id
    type: Literal["expiry"]
    reference_id: str
    amount: PositiveAmount
    balance_after: NonNegativeAmount
    expired_at: datetime = Field(description="the lot's deadline; the event's time is the sweep")


class CoinsRejected(OutboundData):
    """`data` of `coins.rejected`."""

    student_id: Id
    type: LedgerType
    reference_id: Id
    reason: CoinRejection
    balance: NonNegativeAmount
    source_event_id: Id


class CatalogItemUpdated(OutboundData):
    """`data` of `catalog.item.updated`: the item as stored after an admin's upsert; `stock`
    is what remains (null: unlimited)."""

    item_id: Id
    version: PositiveAmount
    title: str
    cost_coins: PositiveAmount
    stock: NonNegativeAmount | None
    active_from: datetime
    active_until: datetime | None
    per_student_limit: PositiveAmount | None


class CatalogItemRejected(OutboundData):
    """`data` of `catalog.item.rejected`: an upsert was refused; nothing changed."""

    item_id: Id
    reason: CatalogRejection
    source_event_id: Id


class PaymentSessionCreated(OutboundData):
    """`data` of `payment.session.created`: pay at `payment_url` before `expires_at`."""

    payment_id: Id
    student_id: Id
    course_id: Id
    amount: PositiveAmount
    currency: str
    provider: Provider
    provider_payment_id: Id
    payment_url: str
    expires_at: datetime


class PaymentConfirmed(OutboundData):
    """`data` of `payment.confirmed`."""

    payment_id: Id
    student_id: Id
    course_id: Id
    amount: PositiveAmount
    currency: str
    provider_payment_id: Id | None
    confirmed_at: datetime


class PaymentFailed(OutboundData):
    """`data` of `payment.failed`; `reason` is the provider's, when it gave one."""

    payment_id: Id
    student_id: Id
    status: Literal["failed"]
    reason: str
    failed_at: datetime


class PaymentCancelled(OutboundData):
    """`data` of `payment.cancelled`."""

    payment_id: Id
    student_id: Id
    status: Literal["cancelled"]
    reason: str
    cancelled_at: datetime


class PaymentExpired(OutboundData):
    """`data` of `payment.expired`: the session passed `expires_at` unpaid."""

    payment_id: Id
    student_id: Id
    status: Literal["expired"]
    reason: str
    expired_at: datetime


class PaymentRefunded(OutboundData):
    """`data` of `payment.refunded`; `reason` is the refund request's."""

    payment_id: Id
    student_id: Id
    status: Literal["refunded"]
    reason: str
    refunded_at: datetime


class PaymentRejected(OutboundData):
    """`data` of `payment.rejected`: a payment request, webhook or refund was refused."""

    payment_id: Id | None
    reason: PaymentRejection
    source_event_id: Id
    # The provider's own words, for `provider_refused`; None otherwise.
    detail: str | None = None


def derived_id(*parts: str) -> str:
    """A stable UUID for the parts, different for every different tuple of one or more parts.

    It is `str(uuid.uuid5(namespace, name))`, computed without building UUID objects: the
    version and the variant are set in the digest's hex (the worker derives two or three ids per
    event; this is 2.7 times as fast as `uuid`). The name joins the parts with U+001F after
    escaping, in each part, U+001B and U+001F with U+001B: so no part can forge a separator,
    and ("a", "b\x1fc") and ("a\x1fb", "c") get different ids. Ids refuse control characters
    at the edge, so for every valid input the escape changes nothing and the ids are the ones
    earlier versions derived.
    """
    name = "\x1f".join(parts)
    if "\x1b" in name or name.count("\x1f") != len(parts) - 1:  # a part holds one of them
        name = "\x1f".join(map(_escaped, parts))
    h = hashlib.sha1(_NAMESPACE_BYTES + name.encode(), usedforsecurity=False).hexdigest()
    # Version 5 is the 13th digit; the variant (RFC 4122: binary 10) the 17th digit's top bits.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


# The 17th hex digit with its top two bits set to binary 10, by the digit.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def _escaped(part: str) -> str:
    if "\x1b" in part or "\x1f" in part:
        return part.replace("\x1b", "\x1b\x1b").replace("\x1f", "\x1b\x1f")
    return part


def result_message(
    event_type: str, event_id: str, subject: str, data: OutboundData, time: datetime
) -> OutgoingMessage:
    """A structured-mode result event keyed by its subject (the student)."""
    return result_message_json(event_type, event_id, subject, data.model_dump_json().encode(), time)


def result_message_json(
    event_type: str, event_id: str, subject: str, data_json: bytes, time: datetime
) -> OutgoingMessage:
    """`result_message` for `data` already serialised (`coins_moved_json`)."""
    value = cloudevents.structured_json(
        event_id=event_id,
        event_type=event_type,
        source=SOURCE,
        subject=subject,
        time=time,
        data_json=data_json,
    )
    return OutgoingMessage(
        topic=event_type,
        key=subject.encode(),
        value=value,
        headers=tuple(cloudevents.structured_headers()),
    )
