"""Coin lots and their expiry in the pure core (CONTRACT section 10)."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_coins import credit, redeem
from worker.core.coins import (
    CoinDecision,
    Key,
    Lot,
    LotsMissingError,
    Wallet,
    decide_coins,
    expire_lots,
    transaction_id,
)
from worker.core.results import derived_id

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def data(value: bytes | None) -> dict[str, object]:
    assert value is not None
    found: dict[str, object] = json.loads(value)["data"]
    return found


def test_a_credit_under_a_lifetime_is_a_lot_that_expires_that_long_after_it_was_applied() -> None:
    plan = decide_coins([credit("s", "c1", 100)], {}, {}, NOW, lifetime=30 * DAY)
    [entry] = plan.entries
    assert plan.lots_changed == {
        entry.transaction_id: Lot(entry.transaction_id, "s", 100, 100, NOW + 30 * DAY, "e")
    }
    assert plan.wallets["s"] == Wallet(100, 100, 0, lotted=100)


def test_without_a_lifetime_a_credit_makes_no_lot_and_never_expires() -> None:
    plan = decide_coins([credit("s", "c1", 100)], {}, {}, NOW)
    assert plan.lots_changed == {}
    assert plan.wallets["s"] == Wallet(100, 100, 0, lotted=0)


def test_a_debit_takes_the_lots_that_expire_first_and_never_expiring_coins_last() -> None:
    # 40 coins from before expiry was on, then lots expiring in 10, 2 and 5 days.
    wallet = Wallet(40, 40, 0)
    plan = decide_coins([credit("s", "c1", 100)], {}, {"s": wallet}, NOW, lifetime=10 * DAY)
    plan2 = decide_coins(
        [credit("s", "c2", 30)], {}, plan.wallets, NOW, lifetime=2 * DAY, lots=_open(plan)
    )
    lots = _open(plan, plan2)
    plan3 = decide_coins(
        [credit("s", "c3", 50)], {}, plan2.wallets, NOW, lifetime=5 * DAY, lots=lots
    )
    lots = _open(plan, plan2, plan3)
    assert plan3.wallets["s"] == Wallet(220, 220, 0, lotted=180)

    debit = decide_coins([redeem("s", "r1", 60)], {}, plan3.wallets, NOW, lots=lots)
    remaining = {lot.expires_at - NOW: lot.remaining for lot in debit.lots_changed.values()}
    assert remaining == {2 * DAY: 0, 5 * DAY: 20}  # the 10-day lot is untouched
    assert debit.wallets["s"] == Wallet(160, 220, 60, lotted=120)

    # Everything in lots, then 30 of the 40 that never expire.
    lots = _open(plan, plan2, plan3, debit)
    last = decide_coins([redeem("s", "r2", 150)], {}, debit.wallets, NOW, lots=lots)
    assert sorted(lot.remaining for lot in last.lots_changed.values()) == [0, 0]
    assert last.wallets["s"] == Wallet(10, 220, 210, lotted=0)


def test_a_debit_of_a_wallet_whose_lots_were_not_loaded_is_never_guessed() -> None:
    wallet = Wallet(100, 100, 0, lotted=100)
    with pytest.raises(LotsMissingError, match="'s'"):
        decide_coins([redeem("s", "r1", 10)], {}, {"s": wallet}, NOW)


def test_a_refused_debit_draws_on_no_lot() -> None:
    plan = decide_coins([credit("s", "c1", 100)], {}, {}, NOW, lifetime=DAY)
    refused = decide_coins([redeem("s", "r1", 101)], {}, plan.wallets, NOW, lots=_open(plan))
    assert refused.lots_changed == {}
    assert refused.wallets == {}


def test_a_replayed_credit_makes_no_second_lot() -> None:
    plan = decide_coins([credit("s", "c1", 100)], {}, {}, NOW, lifetime=DAY)
    again = decide_coins(
        [credit("s", "c1", 100, event="e2")], plan.decisions, plan.wallets, NOW, lifetime=DAY
    )
    assert again.lots_changed == {}
    assert again.entries == []


def test_expiry_debits_what_is_left_of_each_lot_and_announces_it_once_per_lot() -> None:
    a = Lot("00000000-0000-5000-8000-00000000000a", "s", 100, 70, NOW - DAY, "ev-a")
    b = Lot("00000000-0000-5000-8000-00000000000b", "s", 50, 50, NOW - 2 * DAY, "ev-b")
    spent = Lot("00000000-0000-5000-8000-00000000000c", "s", 10, 0, NOW - DAY, "ev-c")
    plan = expire_lots([a, b, spent], {"s": Wallet(200, 300, 100, lotted=120)}, NOW)

    assert [(e.reference_id, e.amount, e.balance_after) for e in plan.entries] == [
        (b.transaction_id, -50, 150),  # the earlier deadline first
        (a.transaction_id, -70, 80),
    ]
    assert plan.wallets["s"] == Wallet(80, 300, 220, lotted=0)
    assert {lot.remaining for lot in plan.lots_changed.values()} == {0}
    assert set(plan.lots_changed) == {a.transaction_id, b.transaction_id}
    first = plan.entries[0]
    assert first.ledger_type == "expiry"
    assert first.source_event_id == "ev-b"  # the credit's event
    assert first.transaction_id == transaction_id(("s", "expiry", b.transaction_id))

    message = plan.messages[0]
    assert message.topic == "coins.expired"
    assert message.key == b"s"
    envelope = json.loads(message.value or b"")
    assert envelope["id"] == derived_id("coins.expired", "s", "expiry", b.transaction_id)
    assert data(message.value) == {
        "transaction_id": first.transaction_id,
        "student_id": "s",
        "type": "expiry",
        "reference_id": b.transaction_id,
        "amount": 50,
        "balance_after": 150,
        "expired_at": "2026-11-24T09:00:00Z",
    }


# ---------------------------------------------------------------------- any sequence


@dataclass
class Ledger:
    """The state the database keeps, as the adapter would load and write it."""

    now: datetime = NOW
    wallets: dict[str, Wallet] = field(default_factory=dict)
    known: dict[Key, CoinDecision] = field(default_factory=dict)
    lots: dict[str, Lot] = field(default_factory=dict)
    entries: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    expired: set[str] = field(default_factory=set)  # lots expired


STUDENTS = ("s1", "s2")
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("batch"),
            st.sampled_from([None, DAY / 2, DAY, 3 * DAY]),
            st.lists(
                st.tuples(
                    st.sampled_from(STUDENTS),
                    st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
                    st.integers(-120, 120).filter(bool),
                ),
                max_size=6,
            ),
        ),
        st.tuples(st.just("sweep"), st.sampled_from([timedelta(0), DAY / 3, DAY, 2 * DAY])),
    ),
    max_size=14,
)


@given(steps)
def test_any_sequence_of_credits_debits_and_sweeps_keeps_the_lots_and_the_balances_in_step(
    script: list[tuple[object, ...]],
) -> None:
    ledger = Ledger()
    for step in script:
        if step[0] == "sweep":
            ledger.now += step[1]  # type: ignore[operator]
            due = [
                lot
                for lot in ledger.lots.values()
                if lot.remaining and lot.expires_at <= ledger.now
            ]
            plan = expire_lots(due, ledger.wallets, ledger.now)
            for entry in plan.entries:
                assert entry.reference_id not in ledger.expired, "a lot expired twice"
                ledger.expired.add(entry.reference_id)
        else:
            _, lifetime, moves = step
            commands = [
                credit(s, ref, amount) if amount > 0 else redeem(s, ref, -amount)
                for s, ref, amount in moves  # type: ignore[attr-defined]
            ]
            open_lots: dict[str, list[Lot]] = defaultdict(list)
            for lot in ledger.lots.values():
                if lot.remaining:
                    open_lots[lot.student_id].append(lot)
            plan = decide_coins(
                commands, ledger.known, ledger.wallets, ledger.now, lots=open_lots,
                lifetime=lifetime,  # type: ignore[arg-type]
            )  # fmt: skip
            for student in {c.student_id for c in commands}:
                _drew_earliest_first(ledger, plan.lots_changed, student)
            ledger.known.update(plan.decisions)
        ledger.wallets.update(plan.wallets)
        for lot_id, lot in plan.lots_changed.items():
            earlier = ledger.lots.get(lot_id)
            assert 0 <= lot.remaining <= (earlier or lot).remaining <= lot.amount
            ledger.lots[lot_id] = lot
        for entry in plan.entries:
            ledger.entries[entry.student_id].append(entry.amount)
            assert entry.balance_after == sum(ledger.entries[entry.student_id])
        for student, wallet in ledger.wallets.items():
            in_lots = sum(
                lot.remaining for lot in ledger.lots.values() if lot.student_id == student
            )
            assert wallet.balance == sum(ledger.entries[student]) >= 0
            assert wallet.balance == wallet.lifetime_earned - wallet.lifetime_spent
            assert wallet.lotted == in_lots <= wallet.balance


def _drew_earliest_first(ledger: Ledger, changed: dict[str, Lot], student: str) -> None:
    """No open lot of `student` that expires before one the batch drew on is left unused."""
    drawn = [
        lot
        for lot_id, lot in changed.items()
        if lot_id in ledger.lots and lot.student_id == student
    ]
    if not drawn:
        return
    latest = max(lot.order for lot in drawn)
    for lot_id, lot in ledger.lots.items():
        after = changed.get(lot_id, lot)
        if lot.student_id == student and lot.order < latest:
            assert after.remaining == 0, "a debit drew on a lot before an earlier one"


def _open(*plans: object) -> dict[str, list[Lot]]:
    """The open lots after `plans`, by student: what the adapter loads for a debit."""
    lots: dict[str, Lot] = {}
    for plan in plans:
        lots.update(plan.lots_changed)  # type: ignore[attr-defined]
    found: dict[str, list[Lot]] = defaultdict(list)
    for lot in lots.values():
        if lot.remaining:
            found[lot.student_id].append(lot)
    return found
