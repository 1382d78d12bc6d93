"""The ledger's rules: credits, debits, refusals, and idempotency exactly as CONTRACT section 3."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from worker.core.ledger import CoinCommand, Decision, Plan, Wallet, decide
from worker.core.results import LedgerType, derived_id

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def credit(student: str, ref: str, amount: int = 100, event: str = "e") -> CoinCommand:
    return CoinCommand(student, "course_completion", ref, amount, None, event)


def redeem(student: str, ref: str, amount: int, event: str = "e") -> CoinCommand:
    return CoinCommand(student, "redemption", ref, -amount, amount, event)


def payload(message_value: bytes | None) -> dict[str, object]:
    assert message_value is not None
    loaded: dict[str, object] = json.loads(message_value)
    return loaded


def test_credit_creates_the_entry_the_wallet_and_a_credited_result() -> None:
    plan = decide([credit("s", "c1", event="e1")], {}, {}, NOW)

    assert [(e.amount, e.balance_after) for e in plan.entries] == [(100, 100)]
    assert plan.wallets == {"s": Wallet(100, 100, 0)}
    [message] = plan.messages
    event = payload(message.value)
    assert (message.topic, message.key, event["type"], event["subject"]) == (
        "coins.credited",
        b"s",
        "coins.credited",
        "s",
    )
    assert event["data"] == {
        "transaction_id": plan.entries[0].transaction_id,
        "student_id": "s",
        "type": "course_completion",
        "reference_id": "c1",
        "amount": 100,
        "balance_after": 100,
        "source_event_id": "e1",
    }


def test_redemption_in_the_same_batch_sees_earlier_credits() -> None:
    plan = decide([credit("s", "c1"), credit("s", "c2"), redeem("s", "r1", 150)], {}, {}, NOW)
    assert [o for _, o in plan.outcomes] == ["applied", "applied", "applied"]
    assert plan.wallets["s"] == Wallet(50, 200, 150)
    debited = payload(plan.messages[-1].value)
    assert debited["type"] == "coins.debited"
    assert debited["data"]["amount"] == 150  # type: ignore[index]


def test_debit_beyond_the_balance_is_refused_and_changes_nothing() -> None:
    plan = decide([redeem("s", "r1", 10)], {}, {"s": Wallet(5, 5, 0)}, NOW)
    assert plan.entries == []
    assert plan.wallets == {}
    rejected = payload(plan.messages[0].value)
    assert rejected["type"] == "coins.rejected"
    assert rejected["data"] == {
        "student_id": "s",
        "type": "redemption",
        "reference_id": "r1",
        "reason": "insufficient_balance",
        "balance": 5,
        "source_event_id": "e",
    }


def test_negative_adjustment_never_takes_a_wallet_below_zero() -> None:
    take = CoinCommand("s", "manual_adjustment", "a1", -6, -6, "e")
    plan = decide([take], {}, {"s": Wallet(5, 5, 0)}, NOW)
    assert payload(plan.messages[0].value)["data"]["reason"] == "insufficient_balance"  # type: ignore[index]


def test_adjustment_by_a_non_admin_is_refused_as_not_authorized() -> None:
    give = CoinCommand("s", "manual_adjustment", "a1", 500, 500, "e", authorized=False)
    plan = decide([give], {}, {}, NOW)
    assert plan.entries == []
    assert payload(plan.messages[0].value)["data"]["reason"] == "not_authorized"  # type: ignore[index]


def test_replay_with_a_new_event_id_repeats_the_first_result_exactly() -> None:
    first = decide([credit("s", "c1", event="e1")], {}, {}, NOW)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    replay = decide([credit("s", "c1", event="e2")], first.decisions, first.wallets, later)
    assert replay.entries == []
    assert replay.wallets == {}
    assert replay.outcomes[0][1] == "duplicate"
    assert replay.messages == first.messages


def test_duplicate_inside_one_batch_is_applied_once() -> None:
    plan = decide([credit("s", "c1", event="e1"), credit("s", "c1", event="e2")], {}, {}, NOW)
    assert len(plan.entries) == 1
    assert plan.messages[0] == plan.messages[1]


def test_same_key_with_another_amount_is_a_conflict_and_changes_nothing() -> None:
    first = decide([redeem("s", "r1", 10)], {}, {"s": Wallet(50, 50, 0)}, NOW)
    conflict = decide([redeem("s", "r1", 20, event="e9")], first.decisions, first.wallets, NOW)
    assert conflict.entries == []
    assert conflict.wallets == {}
    assert conflict.decisions == {}
    event = payload(conflict.messages[0].value)
    assert event["data"]["reason"] == "idempotency_conflict"  # type: ignore[index]
    assert event["data"]["source_event_id"] == "e9"  # type: ignore[index]


def test_refusal_is_remembered_even_after_the_balance_grows() -> None:
    refused = decide([redeem("s", "r1", 10)], {}, {}, NOW)
    richer = {"s": Wallet(1000, 1000, 0)}
    replay = decide([redeem("s", "r1", 10, event="e2")], refused.decisions, richer, NOW)
    assert replay.entries == []
    assert replay.messages == refused.messages


def test_result_ids_are_derived_from_what_they_report() -> None:
    a = decide([credit("s", "c1", event="e1")], {}, {}, NOW)
    b = decide([credit("s", "c1", event="e1")], {}, {}, NOW)
    c = decide([credit("s", "c2", event="e1")], {}, {}, NOW)
    ids = [payload(p.messages[0].value)["id"] for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


# -- property: any sequence leaves every balance >= 0 and equal to the sum of its entries ----

LEDGER_TYPES: list[LedgerType] = [
    "course_completion",
    "referral",
    "manual_adjustment",
    "redemption",
]

commands = st.builds(
    lambda student, kind, ref, amount, authorized, event: CoinCommand(
        student,
        kind,
        ref,
        -abs(amount) if kind == "redemption" else amount,
        abs(amount) if kind == "redemption" else amount,
        event,
        authorized,
    ),
    student=st.sampled_from(["s1", "s2", "s3"]),
    kind=st.sampled_from(LEDGER_TYPES),
    ref=st.sampled_from(["r1", "r2", "r3", "r4"]),
    amount=st.integers(-300, 300).filter(bool),
    authorized=st.booleans(),
    event=st.sampled_from(["e1", "e2"]),
)


@given(batches=st.lists(st.lists(commands, max_size=12), max_size=6))
def test_any_sequence_of_batches_keeps_balances_non_negative_and_equal_to_entries(
    batches: list[list[CoinCommand]],
) -> None:
    known: dict[tuple[str, str, str], Decision] = {}
    wallets: dict[str, Wallet] = {}
    entries: dict[str, list[int]] = defaultdict(list)
    seen_keys: set[tuple[str, str, str]] = set()
    for batch in batches:
        plan: Plan = decide(batch, known, wallets, NOW)
        known.update(plan.decisions)
        wallets.update(plan.wallets)
        for entry in plan.entries:
            key = (entry.student_id, entry.ledger_type, entry.reference_id)
            assert key not in seen_keys, "an effect was applied twice"
            seen_keys.add(key)
            entries[entry.student_id].append(entry.amount)
            assert entry.balance_after == sum(entries[entry.student_id])
    for student, wallet in wallets.items():
        assert wallet.balance >= 0
        assert wallet.balance == sum(entries[student])
        assert wallet.balance == wallet.lifetime_earned - wallet.lifetime_spent


@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_derived_ids_are_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payment-worker:results")
    try:
        expected = str(uuid.uuid5(namespace, "\x1f".join(parts)))
    except UnicodeEncodeError:  # lone surrogates: no event can carry them (pydantic refuses)
        return
    assert derived_id(*parts) == expected
