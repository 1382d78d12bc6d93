"""What the stream is made of and what each input must get: inputs, facts, expected results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

JSON_SAFE_MAX = 9_007_199_254_740_991
# COIN_MAX_AMOUNT of the worker under test: two credits of it overflow any wallet
# (2 * 2**52 > JSON_SAFE_MAX), so that refusal really happens.
COIN_MAX = 2**52
COURSE_REWARD = 100  # COIN_REWARD_COURSE_COMPLETION's default
REFERRAL_REWARD = 50  # COIN_REWARD_REFERRAL's default
WEBHOOK_SECRET = "whsec_hostile_stream"
TOLERANCE = 300  # PAYMENT_WEBHOOK_TOLERANCE_SECONDS' default
PHASES = (1, 2, 3)

COIN_KINDS = (
    "course.completed",
    "referral.succeeded",
    "coins.adjustment.requested",
    "coins.redemption.requested",
)
KINDS = (*COIN_KINDS, "payment.requested", "payment.webhook.received", "payment.refund.requested")
LEDGER_TYPES = dict(
    zip(
        COIN_KINDS,
        ("course_completion", "referral", "manual_adjustment", "redemption"),
        strict=True,
    )
)

Label = tuple[str, str | None]  # a result: its topic and, for a refusal, the reason
EventKey = tuple[str, str]  # CloudEvents (source, id): what a redelivery is recognised by


@dataclass(frozen=True)
class Expect:
    """What an input must get: a dead letter (`labels` None), or one result among `labels`."""

    labels: frozenset[Label] | None

    @property
    def dead(self) -> bool:
        return self.labels is None


DEAD = Expect(None)


def results(*labels: Label) -> Expect:
    return Expect(frozenset(labels))


def refused(topic: str, reason: str) -> Label:
    return (topic, reason)


CREDITED: Label = ("coins.credited", None)
DEBITED: Label = ("coins.debited", None)
SESSION: Label = ("payment.session.created", None)
STATUS_LABELS: dict[str, Label] = {
    "succeeded": ("payment.confirmed", None),
    "failed": ("payment.failed", None),
    "cancelled": ("payment.cancelled", None),
    "refunded": ("payment.refunded", None),
}
COIN_REFUSALS = ("insufficient_balance", "idempotency_conflict", "not_authorized", "limit_exceeded")
PAYMENT_REFUSALS = ("idempotency_conflict", "invalid_signature", "stale_signature",
                    "unknown_payment", "invalid_transition", "amount_mismatch",
                    "not_authorized")  # fmt: skip
# Every kind of result the stream must provoke (checked against what the worker published).
PROVOKED: frozenset[Label] = frozenset(
    {CREDITED, DEBITED, SESSION, *STATUS_LABELS.values()}
    | {("coins.rejected", reason) for reason in COIN_REFUSALS}
    | {("payment.rejected", reason) for reason in PAYMENT_REFUSALS}
)


# What the resolver needs to know of an input that passes the worker's edge.


@dataclass(frozen=True)
class Coin:
    event: EventKey
    student: str
    ledger_type: str
    reference: str
    amount: int  # signed, as it would be applied
    requested: int | None  # as stated; None when the reward comes from configuration
    authorized: bool = True
    over_limit: bool = False


@dataclass(frozen=True)
class OpenPayment:
    event: EventKey
    payment_id: str
    student: str
    course: str
    amount: int
    currency: str  # upper case, as the worker keeps it


@dataclass(frozen=True)
class Webhook:
    event: EventKey
    signature: str  # "valid", "invalid_signature" or "stale_signature"
    ppid: str
    status: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Refund:
    event: EventKey
    refund_id: str
    payment_id: str
    subject: str
    authorized: bool


Fact = Coin | OpenPayment | Webhook | Refund


@dataclass
class Input:
    """One Kafka record to send, and (once resolved) the outcome it must get."""

    kind: str  # what it is, for the report: "valid.coin", "malformed.data", ...
    topic: str  # the event type; the worker's topic is its prefix and this
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    phase: int
    fact: Fact | None = None  # None: bad input at the edge, whatever the state
    unreadable_batch: str | None = None  # sent in one producer batch by tests.raw_records
    expect: Expect = DEAD


def again(original: Input, phase: int) -> Input:
    """A redelivery: the same record, byte for byte, later."""
    return replace(original, kind=original.kind.split(".")[0] + ".redelivery", phase=phase)


def labels_of(expects: Iterable[Expect]) -> tuple[Counter[Label], Counter[Label]]:
    """For each label: how many inputs must get it (their only choice), how many may."""
    must: Counter[Label] = Counter()
    may: Counter[Label] = Counter()
    for expect in expects:
        if expect.labels is None:
            continue
        if len(expect.labels) == 1:
            must.update(expect.labels)
        may.update(expect.labels)
    return must, may
