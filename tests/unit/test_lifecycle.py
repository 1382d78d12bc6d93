"""The payment state machine and what payment commands do, without a database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest

from worker.core.gateway import Session
from worker.core.lifecycle import (
    TRANSITIONS,
    Known,
    OpenPayment,
    Payment,
    PaymentCommand,
    PaymentPlan,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
    Status,
    decide_payments,
    expire_payments,
    is_late_success,
    verdict,
)
from worker.core.webhooks import Notification

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
STATUSES: list[Status] = ["initiated", "succeeded", "failed", "cancelled", "expired", "refunded"]

# CONTRACT section 5, written out: (from, to) pairs a payment may make, and nothing else.
ALLOWED = {
    ("initiated", "succeeded"),
    ("initiated", "failed"),
    ("initiated", "cancelled"),
    ("initiated", "expired"),
    ("succeeded", "refunded"),
    ("failed", "succeeded"),
    ("cancelled", "succeeded"),
    ("expired", "succeeded"),
}


@pytest.mark.parametrize(("current", "target"), list(product(STATUSES, STATUSES)))
def test_every_transition_is_allowed_repeated_or_refused_as_the_contract_says(
    current: Status, target: Status
) -> None:
    expected = (
        "repeat" if current == target else "apply" if (current, target) in ALLOWED else "refuse"
    )
    assert verdict(current, target) == expected


def test_the_table_has_every_status() -> None:
    assert set(TRANSITIONS) == set(STATUSES)


@pytest.mark.parametrize(("current", "target"), list(product(STATUSES, STATUSES)))
def test_late_success_is_a_success_after_a_failure_cancellation_or_expiry(
    current: Status, target: Status
) -> None:
    late = target == "succeeded" and current in {"failed", "cancelled", "expired"}
    assert is_late_success(current, target) is late


# --- decide_payments --------------------------------------------------------------------------


def open_payment(pid: str = "pay-1", amount: int = 49900, **changes: Any) -> OpenPayment:
    fields = {
        "payment_id": pid,
        "student_id": "stu-1",
        "course_id": "course-1",
        "amount": amount,
        "currency": "INR",
        "description": None,
        "source_event_id": f"evt-{pid}",
        "event_source": "tests",
        **changes,
    }
    return OpenPayment(**fields)


def session(pid: str = "pay-1") -> Session:
    return Session("mock", f"mock_{pid}", f"https://pay.test/mock_{pid}", NOW + timedelta(30))


def report(
    status: str, ppid: str = "mock_pay-1", *, amount: int = 49900, **kw: Any
) -> ReportStatus:
    notification = Notification(
        ppid, status, amount, kw.pop("currency", "INR"), kw.pop("reason", None)
    )  # type: ignore[arg-type]
    return ReportStatus(
        kw.pop("provider", "mock"), notification, kw.pop("event", f"evt-{status}"), ppid, "tests"
    )


def refund(refund_id: str = "rf-1", pid: str = "pay-1", *, admin: bool = True) -> RefundPayment:
    return RefundPayment(
        refund_id, pid, "duplicate purchase", "staff-1", admin, f"evt-{refund_id}", "stu-1",
        "tests",
    )  # fmt: skip


def run(*commands: PaymentCommand, known: Known | None = None) -> PaymentPlan:
    return decide_payments(commands, known or Known(), {"pay-1": session()}, NOW)


def body(plan: PaymentPlan, index: int = -1) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(plan.messages[index].value or b"")
    return decoded


def known_after(plan: PaymentPlan, known: Known | None = None) -> Known:
    """What a later batch would load after `plan` committed."""
    known = known or Known()
    payments = {**known.payments, **plan.created, **plan.changed}
    results = {**known.results, **{(t.payment_id, t.to_status): t.result for t in plan.transitions}}
    return Known(
        payments,
        results,
        {**known.refunds, **plan.refunds},
        known.webhooks,
        {**known.answered, **plan.answers},
    )


def test_a_request_opens_a_session_and_answers_it() -> None:
    plan = run(open_payment())
    payment = plan.created["pay-1"]
    assert (payment.status, payment.provider_payment_id) == ("initiated", "mock_pay-1")
    event = body(plan)
    assert event["type"] == "payment.session.created"
    assert event["subject"] == "stu-1"
    assert event["data"] == {
        "payment_id": "pay-1",
        "student_id": "stu-1",
        "course_id": "course-1",
        "amount": 49900,
        "currency": "INR",
        "provider": "mock",
        "provider_payment_id": "mock_pay-1",
        "payment_url": "https://pay.test/mock_pay-1",
        "expires_at": "2026-12-26T09:00:00Z",
    }
    assert plan.outcomes == [("payment.requested", "applied")]


def test_a_replayed_request_repeats_the_session_and_another_one_conflicts() -> None:
    first = run(open_payment())
    later = known_after(first)
    replay = decide_payments(
        [open_payment(source_event_id="evt-other", description="changed text")],
        later, {}, NOW + timedelta(hours=1),
    )  # fmt: skip
    assert replay.messages == first.messages  # byte for byte, same id
    assert replay.outcomes == [("payment.requested", "duplicate")]
    assert not replay.created
    assert not replay.transitions
    for changed in ({"amount": 1}, {"currency": "USD"}, {"student_id": "s2"}, {"course_id": "c2"}):
        conflict = decide_payments([open_payment(**changed)], later, {}, NOW)
        assert body(conflict)["type"] == "payment.rejected"
        assert body(conflict)["data"]["reason"] == "idempotency_conflict"
        assert not conflict.created
        assert not conflict.changed


@pytest.mark.parametrize(
    ("status", "event_type"),
    [("succeeded", "payment.confirmed"), ("failed", "payment.failed"),
     ("cancelled", "payment.cancelled")],
)  # fmt: skip
def test_a_verified_status_moves_an_open_payment(status: str, event_type: str) -> None:
    plan = run(open_payment(), report(status))
    assert plan.created["pay-1"].status == status
    event = body(plan)
    assert event["type"] == event_type
    assert event["data"]["payment_id"] == "pay-1"
    assert [(t.from_status, t.to_status) for t in plan.transitions] == [
        (None, "initiated"), ("initiated", status),
    ]  # fmt: skip


def test_a_failure_carries_the_providers_reason_or_a_default() -> None:
    assert body(run(open_payment(), report("failed", reason="card declined")))["data"] == {
        "payment_id": "pay-1",
        "student_id": "stu-1",
        "status": "failed",
        "reason": "card declined",
        "failed_at": "2026-11-26T09:00:00Z",
    }
    default = body(run(open_payment(), report("cancelled")))["data"]["reason"]
    assert default == "the provider reported the payment cancelled"


def test_a_repeated_status_changes_nothing_and_repeats_the_same_result() -> None:
    first = run(open_payment(), report("succeeded"))
    again = decide_payments([report("succeeded", event="evt-again")], known_after(first), {}, NOW)
    assert again.messages == [first.messages[-1]]
    assert not again.changed
    assert not again.transitions
    assert again.outcomes == [("payment.webhook.received", "duplicate")]


@pytest.mark.parametrize("closed", ["failed", "cancelled", "expired"])
def test_a_late_success_wins_over_a_closed_payment(closed: Status) -> None:
    opened = known_after(run(open_payment()))
    payment = opened.payments["pay-1"]
    closed_payment = Known({"pay-1": _with(payment, status=closed)}, opened.results, {})
    plan = decide_payments([report("succeeded")], closed_payment, {}, NOW)
    assert plan.changed["pay-1"].status == "succeeded"
    assert body(plan)["type"] == "payment.confirmed"
    assert [t.from_status for t in plan.late_successes] == [closed]


@pytest.mark.parametrize(("current", "reported"), [
    ("succeeded", "failed"), ("succeeded", "cancelled"), ("refunded", "succeeded"),
    ("failed", "cancelled"), ("expired", "failed"),
])  # fmt: skip
def test_a_refused_transition_changes_nothing(current: Status, reported: str) -> None:
    opened = known_after(run(open_payment()))
    known = Known({"pay-1": _with(opened.payments["pay-1"], status=current)}, opened.results, {})
    plan = decide_payments([report(reported)], known, {}, NOW)
    assert not plan.changed
    assert not plan.transitions
    assert body(plan)["data"] == {
        "payment_id": "pay-1", "reason": "invalid_transition", "source_event_id": f"evt-{reported}",
    }  # fmt: skip
    assert plan.webhook_refusals == [("mock", "invalid_transition")]


@pytest.mark.parametrize("mismatch", [{"amount": 49901}, {"currency": "USD"}])
def test_a_webhook_whose_amount_or_currency_differs_is_refused(mismatch: dict[str, Any]) -> None:
    plan = run(open_payment(), report("succeeded", **mismatch))
    assert plan.created["pay-1"].status == "initiated"
    assert body(plan)["data"]["reason"] == "amount_mismatch"


def test_a_webhook_for_an_unknown_payment_or_another_provider_is_refused() -> None:
    for command in (report("succeeded", "mock_nope"), report("succeeded", provider="stripe")):
        plan = run(open_payment(), command)
        assert plan.created["pay-1"].status == "initiated"
        event = body(plan)
        assert event["data"] == {
            "payment_id": None, "reason": "unknown_payment", "source_event_id": "evt-succeeded",
        }  # fmt: skip
        assert event["subject"] == command.subject  # the webhook's key: no student is known


def test_a_signature_refusal_is_answered_and_counted() -> None:
    plan = run(RefuseWebhook("stripe", "stale_signature", "old", "evt-w", "pi_1", "tests"))
    assert body(plan)["data"] == {
        "payment_id": None, "reason": "stale_signature", "source_event_id": "evt-w",
    }  # fmt: skip
    assert plan.webhook_refusals == [("stripe", "stale_signature")]


def test_rejection_ids_are_deterministic() -> None:
    command = RefuseWebhook("mock", "invalid_signature", "", "evt-w", "x", "tests")
    assert body(run(command))["id"] == body(run(command))["id"]
    other = RefuseWebhook("mock", "invalid_signature", "", "evt-v", "x", "tests")
    assert body(run(command))["id"] != body(run(other))["id"]


def test_an_admin_refunds_a_succeeded_payment_once() -> None:
    paid = known_after(run(open_payment(), report("succeeded")))
    plan = decide_payments([refund()], paid, {}, NOW)
    assert plan.changed["pay-1"].status == "refunded"
    assert body(plan)["data"] == {
        "payment_id": "pay-1",
        "student_id": "stu-1",
        "status": "refunded",
        "reason": "duplicate purchase",
        "refunded_at": "2026-11-26T09:00:00Z",
    }
    assert [(p.payment_id, r) for p, r in plan.gateway_refunds] == [("pay-1", "rf-1")]
    replay = decide_payments([refund()], known_after(plan, paid), {}, NOW)
    assert replay.messages == plan.messages
    assert not replay.gateway_refunds
    second = decide_payments([refund("rf-2")], known_after(plan, paid), {}, NOW)
    assert body(second)["data"]["reason"] == "invalid_transition"


@pytest.mark.parametrize(("setup", "command", "reason"), [
    ("initiated", refund(), "invalid_transition"),
    ("failed", refund(), "invalid_transition"),
    ("succeeded", refund(pid="pay-404"), "unknown_payment"),
])  # fmt: skip
def test_a_refused_refund_is_remembered(setup: Status, command: RefundPayment, reason: str) -> None:
    opened = known_after(run(open_payment()))
    known = Known({"pay-1": _with(opened.payments["pay-1"], status=setup)}, opened.results, {})
    plan = decide_payments([command], known, {}, NOW)
    assert body(plan)["data"]["reason"] == reason
    assert not plan.changed
    assert not plan.gateway_refunds
    # Even once the refund would be allowed, the same refund id repeats the refusal.
    paid = Known({"pay-1": _with(opened.payments["pay-1"], status="succeeded")}, opened.results,
                 known_after(plan, known).refunds)  # fmt: skip
    replay = decide_payments([command], paid, {}, NOW)
    assert replay.messages == plan.messages
    assert not replay.changed


def test_a_refund_id_reused_for_another_payment_conflicts() -> None:
    paid = known_after(run(open_payment(), report("succeeded")))
    plan = decide_payments([refund()], paid, {}, NOW)
    conflict = decide_payments([refund(pid="pay-2")], known_after(plan, paid), {}, NOW)
    assert body(conflict)["data"]["reason"] == "idempotency_conflict"
    assert not conflict.refunds


def test_expiry_moves_only_open_payments_past_their_deadline() -> None:
    opened = known_after(run(open_payment())).payments["pay-1"]
    due = _with(opened, expires_at=NOW - timedelta(seconds=1))
    plan = expire_payments(
        [due, _with(opened, payment_id="p-later", expires_at=NOW + timedelta(seconds=1)),
         _with(opened, payment_id="p-paid", status="succeeded", expires_at=NOW - timedelta(1))],
        NOW,
    )  # fmt: skip
    assert list(plan.changed) == ["pay-1"]
    assert body(plan)["type"] == "payment.expired"
    assert body(plan)["data"]["reason"] == "the payment session expired unpaid"


def _with(payment: Payment, **changes: Any) -> Payment:
    return replace(payment, **changes)


def test_a_redelivered_webhook_repeats_its_result_even_after_the_payment_moved_on() -> None:
    # One batch applies a failure and then a late success; the worker dies before its offset
    # commit, so the failure's event is delivered again: it must get its first answer back,
    # not a new invalid_transition refusal.
    failed = report("failed", event="evt-failed")
    first = run(open_payment(), failed, report("succeeded", event="evt-ok"))
    assert first.created["pay-1"].status == "succeeded"
    again = decide_payments([failed], known_after_webhooks(first), {}, NOW)
    assert again.messages == [first.messages[1]]  # the payment.failed result, byte for byte
    assert again.outcomes == [("payment.webhook.received", "duplicate")]
    assert not again.webhook_refusals
    assert not again.changed


def known_after_webhooks(plan: PaymentPlan) -> Known:
    known = known_after(plan)
    reported = ("succeeded", "failed", "cancelled")
    by_event = {
        (t.source_event_id, t.payment_id): t.result
        for t in plan.transitions
        if t.source_event_id and t.to_status in reported
    }
    return Known(known.payments, known.results, known.refunds, by_event)


def test_a_refund_refused_for_want_of_the_right_reserves_nothing() -> None:
    paid = known_after(run(open_payment(), report("succeeded")))
    squat = decide_payments([refund(admin=False)], paid, {}, NOW)
    assert body(squat)["data"]["reason"] == "not_authorized"
    assert not squat.refunds
    real = replace(refund(), source_event_id="evt-admin")
    plan = decide_payments([real], known_after(squat, paid), {}, NOW)
    assert plan.changed["pay-1"].status == "refunded"
    assert [r for _, r in plan.gateway_refunds] == ["rf-1"]


def test_a_redelivered_repeat_keeps_its_first_answer_after_the_payment_moved_on() -> None:
    paid = run(open_payment(), report("succeeded", event="evt-ok"))
    confirmed = paid.messages[-1]
    again = report("succeeded", event="evt-again")  # the provider notifies twice
    repeated = decide_payments([again], known_after(paid), {}, NOW)
    assert repeated.messages == [confirmed]
    refunded = decide_payments([refund()], known_after(repeated, known_after(paid)), {}, NOW)
    later = known_after(refunded, known_after(repeated, known_after(paid)))
    redelivered = decide_payments([again], later, {}, NOW + timedelta(hours=1))
    assert redelivered.messages == [confirmed]  # not an invalid_transition: its first answer
    assert not redelivered.webhook_refusals


def test_a_redelivered_payment_conflict_repeats_its_first_answer_byte_for_byte() -> None:
    opened = known_after(run(open_payment()))
    conflicting = open_payment(amount=1, source_event_id="evt-conflict")
    first = decide_payments([conflicting], opened, {}, NOW)
    assert body(first)["data"]["reason"] == "idempotency_conflict"
    again = decide_payments([conflicting], known_after(first, opened), {}, NOW + timedelta(1))
    assert again.messages == first.messages
    assert again.outcomes == [("payment.requested", "duplicate")]


def test_a_refund_whose_subject_is_not_the_payments_student_is_bad_input() -> None:
    paid = known_after(run(open_payment(), report("succeeded")))
    foreign = replace(refund(), subject="someone-else")
    plan = decide_payments([foreign, refund("rf-2")], paid, {}, NOW)
    assert plan.bad_input == [(foreign, "subject 'someone-else' is not the student of 'pay-1'")]
    assert plan.outcomes == [("payment.refund.requested", "applied")]  # the rest goes on
    assert [r for _, r in plan.gateway_refunds] == ["rf-2"]
