"""The resolver: in send order, what each input must get, and how each payment must end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from bench.workload import mock_ppid

from tests.faults.hostile.model import (
    CREDITED,
    DEAD,
    DEBITED,
    JSON_SAFE_MAX,
    PHASES,
    SESSION,
    STATUS_LABELS,
    Coin,
    EventKey,
    Expect,
    Fact,
    Input,
    OpenPayment,
    Refund,
    Webhook,
    refused,
    results,
)

# CONTRACT section 5: the moves a payment may make (expiry plays no part: the TTL is 30 min).
MOVES = {
    "initiated": {"succeeded", "failed", "cancelled"},
    "succeeded": {"refunded"},
    "failed": {"succeeded"},
    "cancelled": {"succeeded"},
    "refunded": set(),
}


@dataclass
class _Payment:
    request: OpenPayment
    phase: int
    status: str = "initiated"


@dataclass
class _Model:
    credit_bound: dict[str, int]  # the most a student's credits could add up to
    answered: dict[EventKey, Expect] = field(default_factory=dict)
    decided: dict[tuple[str, str, str], tuple[int | None, Expect]] = field(default_factory=dict)
    payments: dict[str, _Payment] = field(default_factory=dict)
    by_ppid: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, tuple[str, str, Expect]] = field(default_factory=dict)


def resolve(inputs: list[Input]) -> dict[str, str]:
    """Set every input's `expect`, in send order (phase by phase, each in order); returns the
    status each payment must end in."""
    bound: Counter[str] = Counter()
    for fact in (i.fact for i in inputs):
        if isinstance(fact, Coin) and fact.authorized and not fact.over_limit and fact.amount > 0:
            bound[fact.student] += fact.amount
    model = _Model(dict(bound))
    for phase in PHASES:
        for item in (i for i in inputs if i.phase == phase):
            item.expect = DEAD if item.fact is None else _expect(model, item.fact, phase)
    return {payment_id: p.status for payment_id, p in model.payments.items()}


def _expect(model: _Model, fact: Fact, phase: int) -> Expect:
    if fact.event in model.answered:  # a redelivery repeats its first answer
        return model.answered[fact.event]
    match fact:
        case Coin():
            expect = _coin(model, fact)
        case OpenPayment():
            expect = _open(model, fact, phase)
        case Webhook():
            expect = _webhook(model, fact, phase)
        case Refund():
            expect = _refund(model, fact)
    if not expect.dead:
        model.answered[fact.event] = expect
    return expect


def _coin(model: _Model, fact: Coin) -> Expect:
    if not fact.authorized:  # answered every time, reserves nothing
        return results(refused("coins.rejected", "not_authorized"))
    key = (fact.student, fact.ledger_type, fact.reference)
    if key in model.decided:  # its topic and key: in order
        requested, first = model.decided[key]
        if requested == fact.requested:
            return first
        return results(refused("coins.rejected", "idempotency_conflict"))
    bound = model.credit_bound.get(fact.student, 0)
    overflow = refused("coins.rejected", "limit_exceeded")
    if fact.over_limit:
        expect = results(overflow)
    elif fact.amount > 0:  # overflows only if all the student's credits together could
        expect = results(CREDITED, *([overflow] if bound > JSON_SAFE_MAX else []))
    else:  # depends on credits from other topics
        labels = [refused("coins.rejected", "insufficient_balance")]
        labels += [DEBITED] if -fact.amount <= bound else []
        labels += [overflow] if bound - fact.amount > JSON_SAFE_MAX else []
        expect = results(*labels)
    model.decided[key] = (fact.requested, expect)
    return expect


def _open(model: _Model, fact: OpenPayment, phase: int) -> Expect:
    known = model.payments.get(fact.payment_id)
    if known is None:
        model.payments[fact.payment_id] = _Payment(fact, phase)
        model.by_ppid[mock_ppid(fact.payment_id)] = fact.payment_id
        return results(SESSION)
    # Another student's request sits on another partition: in order only across phases.
    first = known.request
    assert known.phase < phase or first.student == fact.student, "the generator broke the order"
    same = (fact.student, fact.course, fact.amount, fact.currency) == (
        first.student, first.course, first.amount, first.currency)  # fmt: skip
    return results(SESSION if same else refused("payment.rejected", "idempotency_conflict"))


def _webhook(model: _Model, fact: Webhook, phase: int) -> Expect:
    if fact.signature != "valid":
        return results(refused("payment.rejected", fact.signature))
    payment_id = model.by_ppid.get(fact.ppid)
    if payment_id is None:
        return results(refused("payment.rejected", "unknown_payment"))
    payment = model.payments[payment_id]
    assert payment.phase < phase, "the generator let a webhook race its payment's request"
    if (fact.amount, fact.currency) != (payment.request.amount, payment.request.currency):
        return results(refused("payment.rejected", "amount_mismatch"))
    if fact.status != payment.status:
        if fact.status not in MOVES[payment.status]:
            return results(refused("payment.rejected", "invalid_transition"))
        payment.status = fact.status
    return results(STATUS_LABELS[fact.status])


def _refund(model: _Model, fact: Refund) -> Expect:
    payment = model.payments.get(fact.payment_id)
    if payment is not None and payment.request.student != fact.subject:
        return DEAD  # keyed by another than the payment's student: bad input
    if not fact.authorized:
        return results(refused("payment.rejected", "not_authorized"))
    if fact.refund_id in model.refunds:
        payment_id, subject, first = model.refunds[fact.refund_id]
        assert subject == fact.subject, "the generator broke the order"
        if payment_id == fact.payment_id:
            return first
        return results(refused("payment.rejected", "idempotency_conflict"))
    if payment is None:
        expect = results(refused("payment.rejected", "unknown_payment"))
    elif "refunded" in MOVES[payment.status]:
        payment.status = "refunded"
        expect = results(STATUS_LABELS["refunded"])
    else:
        expect = results(refused("payment.rejected", "invalid_transition"))
    model.refunds[fact.refund_id] = (fact.payment_id, fact.subject, expect)
    return expect
