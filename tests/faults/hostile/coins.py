"""Coin scenarios: a coin event with extreme values, then duplicates, redeliveries, conflicts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import strategies as st

from tests.faults.hostile.envelope import MISSING, SOURCES, TIMES, Draft, styles
from tests.faults.hostile.model import (
    COIN_KINDS,
    COIN_MAX,
    COURSE_REWARD,
    JSON_SAFE_MAX,
    LEDGER_TYPES,
    PHASES,
    REFERRAL_REWARD,
    Coin,
    Input,
    again,
)
from tests.faults.hostile.values import (
    POOL,
    ROLES_NOT_ADMIN,
    Names,
    coin_amounts,
    ids,
    roles,
    students,
    texts,
)

# An event's data, the amount it states (None: configured), the amount applied, the actor's role.
CoinData = tuple[dict[str, Any], int | None, int, str]


@st.composite
def coin_event(
    draw: st.DrawFn, names: Names, kind: str, student: str, amount: int | None = None
) -> tuple[Draft, Coin]:
    """A valid coin event; `amount` (else drawn) is what it states, if it states one."""
    reference = draw(ids(names("r")))
    stated: int = amount if amount is not None else draw(coin_amounts)
    data, requested, applied, role = COIN_DATA[kind](draw, names, student, reference, stated)
    draft = Draft(kind, data, student, draw(ids(names("e"))), draw(styles))
    fact = Coin(
        event=draft.event,
        student=student,
        ledger_type=LEDGER_TYPES[kind],
        reference=reference,
        amount=applied,
        requested=requested,
        authorized=role == "admin",
        over_limit=abs(requested or 0) > COIN_MAX,
    )
    return draft, fact


def _course(draw: st.DrawFn, names: Names, student: str, reference: str, stated: int) -> CoinData:
    data = {
        "student_id": student,
        "course_id": reference,
        "completed_at": draw(st.sampled_from(TIMES)),
        "course_tier": draw(st.one_of(st.just(MISSING), texts())),
    }
    return data, None, COURSE_REWARD, "admin"


def _referral(draw: st.DrawFn, names: Names, student: str, reference: str, stated: int) -> CoinData:
    requested = draw(st.sampled_from([None, stated]))
    data = {
        "referral_id": reference,
        "referrer_id": student,
        "referred_student_id": draw(st.one_of(st.just(student), ids(names("f")))),
        "reward_coins": MISSING if requested is None else requested,
    }
    return data, requested, requested or REFERRAL_REWARD, "admin"


def _adjustment(
    draw: st.DrawFn, names: Names, student: str, reference: str, stated: int
) -> CoinData:
    stated *= draw(st.sampled_from([1, -1]))
    role = draw(roles)
    data = {
        "adjustment_id": reference,
        "student_id": student,
        "amount": stated,
        "reason": draw(texts()),
        "actor": {"id": draw(ids(names("a"))), "role": role},
    }
    return data, stated, stated, role


def _redemption(
    draw: st.DrawFn, names: Names, student: str, reference: str, stated: int
) -> CoinData:
    data = {
        "redemption_id": reference,
        "student_id": student,
        "amount": stated,
        "item": draw(texts()),
    }
    return data, stated, -stated, "admin"


COIN_DATA: dict[str, Callable[[st.DrawFn, Names, str, str, int], CoinData]] = {
    "course.completed": _course,
    "referral.succeeded": _referral,
    "coins.adjustment.requested": _adjustment,
    "coins.redemption.requested": _redemption,
}


def restated(draft: Draft, fact: Coin, stated: int | None, role: str = "admin") -> tuple[Any, Coin]:
    """`draft`'s data with another stated amount (or actor role), for the same key."""
    data = dict(draft.data)
    applied = fact.amount
    if fact.ledger_type == "referral":
        data["reward_coins"] = MISSING if stated is None else stated
        applied = stated or REFERRAL_REWARD
    elif fact.ledger_type == "manual_adjustment":
        assert stated is not None
        data["amount"] = applied = stated
        data["actor"] = {**data["actor"], "role": role}
    elif fact.ledger_type == "redemption":
        assert stated is not None
        data["amount"] = stated
        applied = -stated
    changed = replace(
        fact,
        amount=applied,
        requested=stated,
        authorized=role == "admin",
        over_limit=abs(stated or 0) > COIN_MAX,
    )
    return data, changed


def conflicting(fact: Coin) -> st.SearchStrategy[int | None]:
    """Another stated amount for `fact`'s key (for a referral, None: the configured one)."""
    sign = -1 if fact.amount < 0 and fact.ledger_type == "manual_adjustment" else 1
    other = coin_amounts.map(lambda a: a * sign).filter(lambda a: a != fact.requested)
    if fact.ledger_type == "referral":
        return st.one_of(st.just(REFERRAL_REWARD if fact.requested is None else None), other)
    return other


def other_text(data: dict[str, Any], text: str) -> dict[str, Any]:
    for name in ("reason", "item", "course_tier"):
        if name in data:
            return {name: text}
    return {"referred_student_id": text[:128] or "friend"}


FOLLOW_UPS = ("redelivery", "duplicate", "same id, other source", "conflict", "not admin",
              "other text")  # fmt: skip
FIRST_AMOUNTS = (None, 1, COIN_MAX, COIN_MAX + 1, JSON_SAFE_MAX)  # None: drawn


@st.composite
def coin_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """A coin event with extreme values, then duplicates, redeliveries, conflicts."""
    names = Names(tag)
    kind = COIN_KINDS[n % len(COIN_KINDS)]
    amount = FIRST_AMOUNTS[n % len(FIRST_AMOUNTS)]
    draft, fact = draw(coin_event(names, kind, draw(students(names)), amount))
    phase = draw(st.sampled_from([2, 2, 3]))
    inputs = [draft.input("valid.coin", phase, fact)]
    extra = draw(st.lists(st.sampled_from(FOLLOW_UPS), max_size=3))
    for follow in [FOLLOW_UPS[n % len(FOLLOW_UPS)], *extra]:
        phase = draw(st.sampled_from([p for p in PHASES if p >= phase]))
        if follow == "redelivery":
            inputs.append(again(draw(st.sampled_from(inputs)), phase))
            continue
        other = replace(draft, event_id=draw(ids(names("e"))), style=draw(styles))
        data, changed = draft.data, fact
        if follow == "same id, other source":  # another source's event, not a redelivery
            source = draw(st.sampled_from([s for s in SOURCES if s != draft.style.source]))
            other = replace(draft, style=replace(other.style, source=source))
        elif follow == "conflict" and fact.ledger_type != "course_completion":
            data, changed = restated(draft, fact, draw(conflicting(fact)))
        elif follow == "not admin" and fact.ledger_type == "manual_adjustment":
            role = draw(st.sampled_from(ROLES_NOT_ADMIN))
            data, changed = restated(draft, fact, fact.requested, role)
        elif follow == "other text":  # same key and amount, other free text: a duplicate
            data = {**draft.data, **other_text(draft.data, draw(texts()))}
        else:
            follow = "duplicate"
        other = replace(other, data=data)
        what = "valid.coin-" + follow.replace(" ", "-").replace(",", "")
        inputs.append(other.input(what, phase, replace(changed, event=other.event)))
    return inputs


@st.composite
def funding(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """Phase 1: an admin credit to a pooled student, so that later debits may apply."""
    names = Names(tag)
    student = POOL[n % len(POOL)]
    amount = (1_000, 1_000_000, COIN_MAX)[n % 3]
    draft, fact = draw(coin_event(names, "coins.adjustment.requested", student, amount))
    data, fact = restated(draft, fact, amount)
    return [replace(draft, data=data).input("valid.funding", 1, fact)]
