"""Coin handlers: each event type becomes the CONTRACT's ledger command, or bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.core.coins import CoinCommand
from worker.core.commands import command_for
from worker.core.envelope import BadInputError
from worker.core.handlers import Policies, Rewards
from worker.core.signatures import WebhookVerifier

REWARDS = Rewards(course_completion=100, referral=50, max_amount=1_000_000)
POLICIES = Policies(REWARDS, WebhookVerifier({}))


def event(kind: str, data: dict[str, Any], event_id: str = "e-1") -> bytes:
    envelope = {
        "specversion": "1.0",
        "id": event_id,
        "type": kind,
        "source": "t",
        "subject": "s",
        "time": "2026-11-26T09:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    return json.dumps(envelope).encode()


def command(kind: str, data: dict[str, Any]) -> CoinCommand:
    return command_for(kind, b"s", event(kind, data), (), POLICIES)


ADMIN = {"id": "a-1", "role": "admin"}


def test_course_completion_credits_the_configured_reward() -> None:
    data = {"student_id": "s", "course_id": "c", "completed_at": "2026-11-26T09:00:00+05:30"}
    assert command("course.completed", data) == CoinCommand(
        "s", "course_completion", "c", 100, None, "e-1", "course.completed", event_source="t"
    )


def test_referral_credits_the_referrer_with_configured_reward_or_override() -> None:
    data = {"referral_id": "r", "referrer_id": "s", "referred_student_id": "t"}
    assert command("referral.succeeded", data) == CoinCommand(
        "s", "referral", "r", 50, None, "e-1", "referral.succeeded", event_source="t"
    )
    overridden = command("referral.succeeded", {**data, "reward_coins": 70})
    assert (overridden.amount, overridden.requested_amount) == (70, 70)


def test_adjustment_is_signed_and_authorized_only_for_admins() -> None:
    data = {"adjustment_id": "a", "student_id": "s", "amount": -30, "reason": "fix", "actor": ADMIN}
    assert command("coins.adjustment.requested", data) == CoinCommand(
        "s",
        "manual_adjustment",
        "a",
        -30,
        -30,
        "e-1",
        "coins.adjustment.requested",
        authorized=True,
        event_source="t",
        actor=("a-1", "admin"),
    )
    student_actor = {**data, "actor": {"id": "s", "role": "student"}}
    refused = command("coins.adjustment.requested", student_actor)
    assert (refused.authorized, refused.unauthorized_because) == (
        False,
        "actor role 'student' is not admin",
    )


def test_redemption_is_a_debit() -> None:
    data = {"redemption_id": "d", "student_id": "s", "amount": 40, "item": "sticker"}
    assert command("coins.redemption.requested", data) == CoinCommand(
        "s", "redemption", "d", -40, 40, "e-1", "coins.redemption.requested", event_source="t"
    )


def test_a_redemption_by_item_is_priced_later_and_capped_at_the_largest_amount() -> None:
    data = {"redemption_id": "d", "student_id": "s", "item_id": "v-1"}
    assert command("coins.redemption.requested", data) == CoinCommand(
        "s", "redemption", "d", 0, None, "e-1", "coins.redemption.requested", event_source="t",
        item_id="v-1", price_cap=REWARDS.max_amount,
    )  # fmt: skip
    stated = command("coins.redemption.requested", {**data, "amount": 40})
    assert (stated.amount, stated.requested_amount, stated.item_id) == (-40, 40, "v-1")


VALID = {
    "course.completed": {
        "student_id": "s",
        "course_id": "c",
        "completed_at": "2026-11-26T09:00:00Z",
    },
    "referral.succeeded": {"referral_id": "r", "referrer_id": "s", "referred_student_id": "t"},
    "coins.adjustment.requested": {
        "adjustment_id": "a",
        "student_id": "s",
        "amount": 5,
        "reason": "x",
        "actor": ADMIN,
    },
    "coins.redemption.requested": {
        "redemption_id": "d",
        "student_id": "s",
        "amount": 1,
        "item": "x",
    },
}


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("course.completed", {"completed_at": None}),
        ("course.completed", {"student_id": ""}),
        ("course.completed", {"completed_at": "2026-11-26T09:00:00"}),  # no offset
        ("referral.succeeded", {"reward_coins": 0}),
        ("coins.adjustment.requested", {"amount": 0}),
        ("coins.adjustment.requested", {"amount": 9007199254740992}),
        ("coins.adjustment.requested", {"amount": "5"}),
        ("coins.adjustment.requested", {"actor": {"id": "a"}}),
        ("coins.redemption.requested", {"amount": 1.5}),
        ("coins.redemption.requested", {"amount": -1}),
        ("coins.redemption.requested", {"redemption_id": "d" * 129}),
    ],
)
def test_data_failing_its_schema_is_bad_input(kind: str, change: dict[str, Any]) -> None:
    data = {k: v for k, v in {**VALID[kind], **change}.items() if v is not None}
    with pytest.raises(BadInputError, match="data fails its schema"):
        command(kind, data)


@pytest.mark.parametrize("kind", list(VALID))
def test_valid_data_of_every_type_is_a_command(kind: str) -> None:
    assert command(kind, VALID[kind]).student_id == "s"


def test_unknown_type_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="no handler"):
        command_for("coins.gifted", b"s", event("coins.gifted", {}), (), POLICIES)


@pytest.mark.parametrize(
    ("key", "subject", "student", "complaint"),
    [
        (b"s", "s", "t", "does not name 't'"),  # the data is about another student
        (b"t", "s", "s", "is not the event's subject"),  # the key names another
        (None, "s", "s", "is not the event's subject"),
        (b"\xff", "s", "s", "is not the event's subject"),
    ],
)
def test_key_subject_and_student_must_agree(
    key: bytes | None, subject: str, student: str, complaint: str
) -> None:
    data = {"redemption_id": "d", "student_id": student, "amount": 1, "item": "x"}
    value = json.loads(event("coins.redemption.requested", data))
    value["subject"] = subject
    with pytest.raises(BadInputError, match=complaint):
        command_for("coins.redemption.requested", key, json.dumps(value).encode(), (), POLICIES)


@pytest.mark.parametrize(
    ("kind", "amount_field", "amount", "over"),
    [
        ("coins.redemption.requested", "amount", 1_000_000, False),
        ("coins.redemption.requested", "amount", 1_000_001, True),
        ("coins.adjustment.requested", "amount", -1_000_001, True),
        ("coins.adjustment.requested", "amount", 1_000_000, False),
        ("referral.succeeded", "reward_coins", 1_000_001, True),
        ("referral.succeeded", "reward_coins", 1_000_000, False),
    ],
)
def test_a_stated_amount_above_coin_max_amount_is_marked_for_refusal(
    kind: str, amount_field: str, amount: int, over: bool
) -> None:
    assert command(kind, {**VALID[kind], amount_field: amount}).exceeds_limit is over


def test_a_configured_reward_is_never_over_the_limit() -> None:
    small = Policies(Rewards(course_completion=500, referral=50, max_amount=10), POLICIES.webhooks)
    data = VALID["course.completed"]
    built = command_for("course.completed", b"s", event("course.completed", data), (), small)
    assert not built.exceeds_limit


def test_unknown_fields_are_tolerated() -> None:
    data = {"redemption_id": "d", "student_id": "s", "amount": 1, "item": "x", "extra": {"a": 1}}
    assert command("coins.redemption.requested", data).amount == -1
