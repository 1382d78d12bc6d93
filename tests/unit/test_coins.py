"""The ledger's rules: credits, debits, refusals, and idempotency exactly as CONTRACT section 3."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from worker.core.coins import CoinCommand, CoinDecision, CoinPlan, Wallet, decide_coins
from worker.core.messages import OutgoingMessage
from worker.core.registry import INPUT_EVENTS
from worker.core.results import LedgerType, derived_id

# The consumed event type behind each ledger type, as the registry pairs them.
EVENT_TYPES = {event.effect: event.type for event in INPUT_EVENTS}

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def credit(student: str, ref: str, amount: int = 100, event: str = "e") -> CoinCommand:
    return CoinCommand(student, "course_completion", ref, amount, None, event, "course.completed")


def redeem(student: str, ref: str, amount: int, event: str = "e") -> CoinCommand:
    return CoinCommand(
        student, "redemption", ref, -amount, amount, event, "coins.redemption.requested"
    )


def payload(message_value: bytes | None) -> dict[str, object]:
    assert message_value is not None
    loaded: dict[str, object] = json.loads(message_value)
    return loaded


def test_credit_creates_the_entry_the_wallet_and_a_credited_result() -> None:
    plan = decide_coins([credit("s", "c1", event="e1")], {}, {}, NOW)

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
    plan = decide_coins([credit("s", "c1"), credit("s", "c2"), redeem("s", "r1", 150)], {}, {}, NOW)
    assert [o for _, o in plan.outcomes] == ["applied", "applied", "applied"]
    assert plan.wallets["s"] == Wallet(50, 200, 150)
    debited = payload(plan.messages[-1].value)
    assert debited["type"] == "coins.debited"
    assert debited["data"]["amount"] == 150  # type: ignore[index]


def test_debit_beyond_the_balance_is_refused_and_changes_nothing() -> None:
    plan = decide_coins([redeem("s", "r1", 10)], {}, {"s": Wallet(5, 5, 0)}, NOW)
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
    take = CoinCommand("s", "manual_adjustment", "a1", -6, -6, "e", "coins.adjustment.requested")
    plan = decide_coins([take], {}, {"s": Wallet(5, 5, 0)}, NOW)
    assert payload(plan.messages[0].value)["data"]["reason"] == "insufficient_balance"  # type: ignore[index]


def test_adjustment_by_a_non_admin_is_refused_as_not_authorized() -> None:
    give = CoinCommand(
        "s",
        "manual_adjustment",
        "a1",
        500,
        500,
        "e",
        "coins.adjustment.requested",
        authorized=False,
    )
    plan = decide_coins([give], {}, {}, NOW)
    assert plan.entries == []
    assert payload(plan.messages[0].value)["data"]["reason"] == "not_authorized"  # type: ignore[index]


def test_replay_with_a_new_event_id_repeats_the_first_result_exactly() -> None:
    first = decide_coins([credit("s", "c1", event="e1")], {}, {}, NOW)
    later = datetime(2026, 12, 1, tzinfo=UTC)
    replay = decide_coins([credit("s", "c1", event="e2")], first.decisions, first.wallets, later)
    assert replay.entries == []
    assert replay.wallets == {}
    assert replay.outcomes[0][1] == "duplicate"
    assert replay.messages == first.messages


def test_duplicate_inside_one_batch_is_applied_once() -> None:
    plan = decide_coins([credit("s", "c1", event="e1"), credit("s", "c1", event="e2")], {}, {}, NOW)
    assert len(plan.entries) == 1
    assert plan.messages[0] == plan.messages[1]


def test_same_key_with_another_amount_is_a_conflict_and_changes_nothing() -> None:
    first = decide_coins([redeem("s", "r1", 10)], {}, {"s": Wallet(50, 50, 0)}, NOW)
    conflict = decide_coins(
        [redeem("s", "r1", 20, event="e9")], first.decisions, first.wallets, NOW
    )
    assert conflict.entries == []
    assert conflict.wallets == {}
    assert conflict.decisions == {}
    event = payload(conflict.messages[0].value)
    assert event["data"]["reason"] == "idempotency_conflict"  # type: ignore[index]
    assert event["data"]["source_event_id"] == "e9"  # type: ignore[index]


def test_refusal_is_remembered_even_after_the_balance_grows() -> None:
    refused = decide_coins([redeem("s", "r1", 10)], {}, {}, NOW)
    richer = {"s": Wallet(1000, 1000, 0)}
    replay = decide_coins([redeem("s", "r1", 10, event="e2")], refused.decisions, richer, NOW)
    assert replay.entries == []
    assert replay.messages == refused.messages


def test_result_ids_are_derived_from_what_they_report() -> None:
    a = decide_coins([credit("s", "c1", event="e1")], {}, {}, NOW)
    b = decide_coins([credit("s", "c1", event="e1")], {}, {}, NOW)
    c = decide_coins([credit("s", "c2", event="e1")], {}, {}, NOW)
    ids = [payload(p.messages[0].value)["id"] for p in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]


# -- property: any sequence leaves every balance >= 0 and equal to the sum of its entries ----

LEDGER_TYPES: list[LedgerType] = [
    "course_completion",
    "referral",
    "manual_adjustment",
    "redemption",
]


def command_of(
    student: str,
    kind: LedgerType,
    ref: str,
    amount: int,
    authorized: bool,
    event: str,
    over: bool = False,
) -> CoinCommand:
    """A command as its handler builds it: a redemption debits what it states."""
    debit = kind == "redemption"
    stated = abs(amount) if debit else amount
    return CoinCommand(
        student,
        kind,
        ref,
        -stated if debit else amount,
        stated,
        event,
        EVENT_TYPES[kind],
        authorized,
        over,
        "src",
    )


commands = st.builds(
    command_of,
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
    known: dict[tuple[str, str, str], CoinDecision] = {}
    wallets: dict[str, Wallet] = {}
    entries: dict[str, list[int]] = defaultdict(list)
    seen_keys: set[tuple[str, str, str]] = set()
    for batch in batches:
        plan: CoinPlan = decide_coins(batch, known, wallets, NOW)
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


# Text as events carry it: no lone surrogates (pydantic refuses them at the edge).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
SEPARATORS = st.text(st.sampled_from("ab\x1b\x1f"), max_size=6)


@given(st.lists(TEXT.filter(lambda t: "\x1b" not in t and "\x1f" not in t), min_size=1, max_size=5))
def test_derived_ids_of_valid_ids_are_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    # Ids refuse control characters, so the ids of earlier versions hold for every valid input.
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payment-worker:results")
    assert derived_id(*parts) == str(uuid.uuid5(namespace, "\x1f".join(parts)))


@given(st.lists(st.one_of(TEXT, SEPARATORS), min_size=1, max_size=5))
def test_derived_ids_are_uuid5_of_the_escaped_joined_parts(parts: list[str]) -> None:
    # The version and variant set in the hex are uuid's; the escape is the one documented.
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payment-worker:results")
    escaped = [p.replace("\x1b", "\x1b\x1b").replace("\x1f", "\x1b\x1f") for p in parts]
    assert derived_id(*parts) == str(uuid.uuid5(namespace, "\x1f".join(escaped)))


def test_a_separator_inside_a_part_cannot_forge_another_tuples_id() -> None:
    # The collision of issue 11: (student, type, course) with the separator inside an id.
    first = derived_id("coins.credited", "a", "course_completion", "b\x1fcourse_completion\x1fc")
    second = derived_id("coins.credited", "a\x1fcourse_completion\x1fb", "course_completion", "c")
    assert first != second


@given(st.lists(st.one_of(TEXT, SEPARATORS), min_size=1, max_size=4),
       st.lists(st.one_of(TEXT, SEPARATORS), min_size=1, max_size=4))  # fmt: skip
def test_different_parts_always_give_different_ids(a: list[str], b: list[str]) -> None:
    assert (derived_id(*a) == derived_id(*b)) == (a == b)


# -- limits (CONTRACT section 3: limit_exceeded) ------------------------------------------------

MAX = 9_007_199_254_740_991


def referral(student: str, ref: str, amount: int, event: str = "e") -> CoinCommand:
    return CoinCommand(student, "referral", ref, amount, amount, event, "referral.succeeded")


def reason(plan: CoinPlan, index: int = 0) -> object:
    return payload(plan.messages[index].value)["data"]["reason"]  # type: ignore[index]


def test_a_credit_past_the_json_safe_range_is_refused_as_limit_exceeded() -> None:
    plan = decide_coins([referral("s", "r1", MAX), credit("s", "c1")], {}, {}, NOW)
    assert [o for _, o in plan.outcomes] == ["applied", "rejected"]
    assert reason(plan, 1) == "limit_exceeded"
    assert plan.wallets["s"] == Wallet(MAX, MAX, 0)


def test_lifetime_earned_past_the_range_is_refused_though_the_balance_fits() -> None:
    batch = [referral("s", "r1", MAX), redeem("s", "d1", MAX), credit("s", "c1")]
    plan = decide_coins(batch, {}, {}, NOW)
    assert [o for _, o in plan.outcomes] == ["applied", "applied", "rejected"]
    assert reason(plan, 2) == "limit_exceeded"
    assert plan.wallets["s"] == Wallet(0, MAX, MAX)


def test_a_stated_amount_above_the_configured_limit_is_refused_and_remembered() -> None:
    big = replace(referral("s", "r1", 2_000_000), exceeds_limit=True)
    refused = decide_coins([big], {}, {}, NOW)
    assert reason(refused) == "limit_exceeded"
    assert refused.entries == []
    replay = decide_coins([replace(big, source_event_id="e2")], refused.decisions, {}, NOW)
    assert replay.messages == refused.messages


# -- answers that reserve nothing, and redeliveries ----------------------------------------------


def test_a_refusal_for_want_of_the_right_reserves_nothing() -> None:
    squat = CoinCommand(
        "s", "manual_adjustment", "a1", 30, 30, "e1", "coins.adjustment.requested", authorized=False
    )
    refused = decide_coins([squat], {}, {}, NOW)
    assert reason(refused) == "not_authorized"
    assert refused.decisions == {}
    real = CoinCommand("s", "manual_adjustment", "a1", 30, 30, "e2", "coins.adjustment.requested")
    applied = decide_coins([real], refused.decisions, {}, NOW, refused.answers)
    assert [o for _, o in applied.outcomes] == ["applied"]
    assert applied.wallets["s"].balance == 30


def test_a_redelivered_refusal_repeats_its_first_answer_byte_for_byte() -> None:
    first = decide_coins([redeem("s", "r1", 10)], {}, {"s": Wallet(50, 50, 0)}, NOW)
    conflicting = redeem("s", "r1", 20, event="e9")
    answered = decide_coins([conflicting], first.decisions, first.wallets, NOW)
    later, richer = datetime(2026, 12, 1, tzinfo=UTC), {"s": Wallet(500, 500, 0)}
    again = decide_coins([conflicting], first.decisions, richer, later, answered.answers)
    assert again.messages == answered.messages
    assert again.outcomes == [(conflicting, "duplicate")]
    # Another event with the same conflict is answered afresh (its own id and time).
    other = decide_coins([redeem("s", "r1", 20, event="e10")], first.decisions, richer, later)
    assert payload(other.messages[0].value)["id"] != payload(answered.messages[0].value)["id"]


amounts = st.one_of(
    st.integers(-300, 300).filter(bool),
    st.sampled_from([MAX, -MAX, MAX - 1, 1_000_000, 1_000_001]),
)

extreme_commands = st.builds(
    command_of,
    student=st.sampled_from(["s1", "s2"]),
    kind=st.sampled_from(LEDGER_TYPES),
    ref=st.sampled_from(["r1", "r2", "r3"]),
    amount=amounts,
    authorized=st.booleans(),
    event=st.sampled_from(["e1", "e2", "e3"]),
    over=st.booleans(),
)


@given(batches=st.lists(st.lists(extreme_commands, max_size=12), max_size=6))
def test_no_sequence_of_amounts_makes_decide_fail_or_leave_the_json_safe_range(
    batches: list[list[CoinCommand]],
) -> None:
    known: dict[tuple[str, str, str], CoinDecision] = {}
    wallets: dict[str, Wallet] = {}
    answered: dict[tuple[str, str, str], OutgoingMessage] = {}
    for batch in batches:
        plan = decide_coins(batch, known, wallets, NOW, answered)
        known.update(plan.decisions)
        wallets.update(plan.wallets)
        answered.update(plan.answers)
        assert len(plan.messages) == len(batch)  # every command answered, exactly once
        for command, outcome in plan.outcomes:
            if outcome == "applied":
                assert command.authorized
                assert not command.exceeds_limit
    for wallet in wallets.values():
        assert 0 <= wallet.balance <= wallet.lifetime_earned <= MAX
        assert 0 <= wallet.lifetime_spent <= MAX
        assert wallet.balance == wallet.lifetime_earned - wallet.lifetime_spent


def test_an_event_id_reused_by_another_type_gets_no_answer_of_the_other_type() -> None:
    # A producer numbering each type's events on its own: "1" is a refused adjustment and a
    # course completion. The completion must be decided, not answered with the refusal.
    refused = CoinCommand(
        "s",
        "manual_adjustment",
        "a1",
        5,
        5,
        "1",
        "coins.adjustment.requested",
        False,
        event_source="lms",
    )
    first = decide_coins([refused], {}, {}, NOW)
    completion = CoinCommand(
        "s", "course_completion", "c1", 100, None, "1", "course.completed", event_source="lms"
    )
    later = decide_coins([completion], first.decisions, {}, NOW, first.answers)
    assert later.outcomes == [(completion, "applied")]
