"""The payment state machine and what payment commands do, without a database."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest

from worker.core.gateway import RefundReceipt, RefundRequest, Refused, Session, SessionRequest
from worker.core.payments import (
    TRANSITIONS,
    GatewayCall,
    Known,
    OpenPayment,
    Payment,
    PaymentCommand,
    PaymentDefaults,
    PaymentPlan,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
    Status,
    decide_payments,
    expire_payments,
    is_late_success,
    settle_refund,
    settle_session,
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

DEFAULTS = PaymentDefaults(provider="mock", session_ttl=timedelta(days=30))


def open_payment(pid: str = "pay-1", amount: int = 49900, **changes: Any) -> OpenPayment:
    fields = {
        "payment_id": pid,
        "student_id": "stu-1",
        "course_id": "course-1",
        "amount": amount,
        "currency": "INR",
        "description": None,
        "source_event_id": f"evt-{pid}",
        "event_type": "payment.requested",
        "event_source": "tests",
        **changes,
    }
    return OpenPayment(**fields)


def session(pid: str = "pay-1") -> Session:
    return Session(f"mock_{pid}", f"https://pay.test/mock_{pid}", NOW + timedelta(30))


def report(
    status: str, ppid: str = "mock_pay-1", *, amount: int = 49900, **kw: Any
) -> ReportStatus:
    notification = Notification(
        ppid,
        status,  # type: ignore[arg-type]
        amount,
        kw.pop("currency", "INR"),
        kw.pop("reason", None),
        payment_id=kw.pop("payment_id", None),
        captured_id=kw.pop("captured_id", None),
        event_id=kw.pop("provider_event", None),
    )
    return ReportStatus(
        kw.pop("provider", "mock"),
        notification,
        kw.pop("event", f"evt-{status}"),
        "payment.webhook.received",
        ppid,
        "tests",
    )


def refund(refund_id: str = "rf-1", pid: str = "pay-1", *, admin: bool = True) -> RefundPayment:
    return RefundPayment(
        refund_id, pid, "duplicate purchase", "staff-1", admin, f"evt-{refund_id}",
        "payment.refund.requested", "stu-1", "tests",
    )  # fmt: skip


def decide(
    *commands: PaymentCommand, known: Known | None = None, now: datetime = NOW
) -> PaymentPlan:
    return decide_payments(commands, known or Known(), DEFAULTS, now)


def body(plan: PaymentPlan, index: int = -1) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(plan.messages[index].value or b"")
    return decoded


def known_after(plan: PaymentPlan, known: Known | None = None) -> Known:
    """What a later batch would load after `plan` committed."""
    known = known or Known()
    payments = {**known.payments, **plan.created, **plan.changed}
    results = {**known.results, **{(t.payment_id, t.to_status): t.result for t in plan.transitions}}
    refunds = {**known.refunds, **plan.refunds, **plan.refunds_settled}
    refunding = frozenset(r.payment_id for r in refunds.values() if r.outcome == "pending")
    moved_by_provider_events = {
        (payments[t.payment_id].provider, t.provider_event_id, t.payment_id): t.result
        for t in plan.transitions
        if t.provider_event_id is not None
    }
    return Known(
        payments, results, refunds, refunding, known.webhooks, {**known.answered, **plan.answers},
        {**moved_by_provider_events, **known.provider_events},
    )  # fmt: skip


def opened(pid: str = "pay-1") -> Known:
    """What is known once `pid` was requested and the provider opened its session."""
    requested = known_after(decide(open_payment(pid)))
    return known_after(settle_session(requested.payments[pid], session(pid), NOW), requested)


def with_status(known: Known, status: Status, pid: str = "pay-1") -> Known:
    return replace(
        known, payments={**known.payments, pid: _with(known.payments[pid], status=status)}
    )


def run(*commands: PaymentCommand) -> PaymentPlan:
    """`commands` against an opened payment pay-1."""
    return decide(*commands, known=opened())


def test_a_request_records_the_payment_and_asks_for_a_session_without_answering_yet() -> None:
    plan = decide(open_payment())
    payment = plan.created["pay-1"]
    assert (payment.status, payment.provider, payment.provider_payment_id) == (
        "initiated", "mock", None,
    )  # fmt: skip
    assert payment.expires_at == NOW + DEFAULTS.session_ttl
    assert plan.calls == [GatewayCall("session", "pay-1", "pay-1")]
    assert not plan.messages  # the answer is the session, published once the provider opens it
    assert plan.outcomes == [("payment.requested", "applied")]


def test_a_request_may_name_its_provider() -> None:
    plan = decide(open_payment(provider="razorpay"))
    assert plan.created["pay-1"].provider == "razorpay"


def test_an_opened_session_is_announced() -> None:
    requested = known_after(decide(open_payment()))
    plan = settle_session(requested.payments["pay-1"], session(), NOW)
    payment = plan.changed["pay-1"]
    assert (payment.provider_payment_id, payment.payment_url) == (
        "mock_pay-1", "https://pay.test/mock_pay-1",
    )  # fmt: skip
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
    assert [(t.from_status, t.to_status) for t in plan.transitions] == [(None, "initiated")]
    # A second answer to the same call (a repeat after a crash) changes nothing.
    assert settle_session(payment, session(), NOW) == PaymentPlan()


def test_a_providers_refusal_fails_the_payment_with_its_reason() -> None:
    requested = known_after(decide(open_payment(provider="stripe")))
    plan = settle_session(requested.payments["pay-1"], Refused("stripe: card declined"), NOW)
    assert plan.changed["pay-1"].status == "failed"
    assert body(plan)["type"] == "payment.failed"
    assert body(plan)["data"]["reason"] == "stripe: card declined"
    # A replay of the request repeats that answer.
    replay = decide(open_payment(source_event_id="evt-again"), known=known_after(plan, requested))
    assert replay.messages == plan.messages
    assert not replay.calls


def test_a_replay_of_a_payment_that_closed_before_its_session_opened_gets_its_status() -> None:
    requested = known_after(decide(open_payment()))
    expired = expire_payments([_with(requested.payments["pay-1"], expires_at=NOW)], NOW)
    known = known_after(expired, requested)
    replay = decide(open_payment(source_event_id="evt-again"), known=known)
    assert [body(replay)["type"]] == ["payment.expired"]
    assert not replay.owed


def test_a_session_opened_after_the_payment_closed_is_kept_but_not_announced() -> None:
    requested = known_after(decide(open_payment()))
    expired = _with(requested.payments["pay-1"], status="expired")
    plan = settle_session(expired, session(), NOW)
    assert plan.changed["pay-1"].provider_payment_id == "mock_pay-1"  # a late webhook finds it
    assert plan.changed["pay-1"].status == "expired"
    assert not plan.messages
    assert not plan.transitions


def test_a_replayed_request_repeats_the_session_and_another_one_conflicts() -> None:
    known = opened()
    first = known.results[("pay-1", "initiated")]
    replay = decide(
        open_payment(source_event_id="evt-other", description="changed text"),
        known=known, now=NOW + timedelta(hours=1),
    )  # fmt: skip
    assert replay.messages == [first]  # byte for byte, same id
    assert replay.outcomes == [("payment.requested", "duplicate")]
    assert not replay.created
    assert not replay.transitions
    assert not replay.calls  # the provider is not asked again
    for changed in ({"amount": 1}, {"currency": "USD"}, {"student_id": "s2"}, {"course_id": "c2"}):
        conflict = decide(open_payment(**changed), known=known)
        assert body(conflict)["type"] == "payment.rejected"
        assert body(conflict)["data"]["reason"] == "idempotency_conflict"
        assert not conflict.created
        assert not conflict.changed


def test_a_request_replayed_while_its_session_opens_is_owed_that_answer() -> None:
    requested = known_after(decide(open_payment()))
    replay = decide(open_payment(source_event_id="evt-again"), known=requested)
    assert replay.outcomes == [("payment.requested", "duplicate")]
    assert not replay.messages  # not known yet: published with the first when it comes
    assert replay.owed == {("session", "pay-1"): 1}
    assert not replay.calls
    both = decide(open_payment(), open_payment(source_event_id="evt-again"))  # one batch
    assert both.owed == {("session", "pay-1"): 1}
    assert len(both.calls) == 1


@pytest.mark.parametrize(
    ("status", "event_type"),
    [("succeeded", "payment.confirmed"), ("failed", "payment.failed"),
     ("cancelled", "payment.cancelled"), ("expired", "payment.expired")],
)  # fmt: skip
def test_a_verified_status_moves_an_open_payment(status: str, event_type: str) -> None:
    plan = run(report(status))
    assert plan.changed["pay-1"].status == status
    event = body(plan)
    assert event["type"] == event_type
    assert event["data"]["payment_id"] == "pay-1"
    assert [(t.from_status, t.to_status) for t in plan.transitions] == [("initiated", status)]


def test_a_failed_attempt_keeps_the_payment_open_with_its_reason() -> None:
    plan = run(report("attempt_failed", reason="Your card was declined."))
    assert plan.changed["pay-1"].status == "initiated"
    assert plan.changed["pay-1"].status_reason == "Your card was declined."
    assert not plan.messages
    assert not plan.transitions
    assert plan.outcomes == [("payment.webhook.received", "applied")]
    # The student pays with another card: the payment succeeds.
    paid = decide(report("succeeded", event="evt-ok"), known=known_after(plan, opened()))
    assert paid.changed["pay-1"].status == "succeeded"
    # A failed attempt reported after the success changes nothing.
    late = decide(report("attempt_failed", event="evt-late"), known=known_after(paid, opened()))
    assert not late.changed
    assert late.outcomes == [("payment.webhook.received", "ignored")]


def test_a_webhook_finds_its_payment_by_the_payment_id_in_the_providers_metadata() -> None:
    requested = known_after(decide(open_payment()))  # the session's answer is not written yet
    plan = decide(report("succeeded", "pi_123", payment_id="pay-1", captured_id="pi_123"),
                  known=requested)  # fmt: skip
    assert plan.changed["pay-1"].status == "succeeded"
    assert plan.changed["pay-1"].captured_id == "pi_123"
    other = decide(
        report("succeeded", "pi_123", payment_id="pay-1", provider="stripe"), known=requested
    )
    assert body(other)["data"]["reason"] == "unknown_payment"  # never another provider's


def test_a_metadata_match_never_contradicts_what_is_known_of_the_payment() -> None:
    known = opened()  # pay-1's session is mock_pay-1
    other_session = report("expired", "mock_other", payment_id="pay-1")
    plan = decide(other_session, known=known)
    assert body(plan)["data"]["reason"] == "unknown_payment"
    assert not plan.changed
    paid = known_after(
        decide(report("succeeded", payment_id="pay-1", captured_id="pi_1"), known=known), known
    )
    assert paid.payments["pay-1"].captured_id == "pi_1"
    second = Notification("pi_2", "succeeded", 49900, "INR", payment_id="pay-1",
                          captured_id="pi_2", names="payment")  # fmt: skip
    plan = decide(
        ReportStatus("mock", second, "evt-2", "payment.webhook.received", "pi_2", "t"), known=paid
    )
    assert body(plan)["data"]["reason"] == "unknown_payment"  # another payment's money
    same = Notification("pi_1", "succeeded", 49900, "INR", payment_id="pay-1",
                        captured_id="pi_1", names="payment")  # fmt: skip
    again = decide(
        ReportStatus("mock", same, "evt-3", "payment.webhook.received", "pi_1", "t"), known=paid
    )
    assert again.outcomes == [("payment.webhook.received", "duplicate")]


def test_a_failure_carries_the_providers_reason_or_a_default() -> None:
    assert body(run(report("failed", reason="card declined")))["data"] == {
        "payment_id": "pay-1",
        "student_id": "stu-1",
        "status": "failed",
        "reason": "card declined",
        "failed_at": "2026-11-26T09:00:00Z",
    }
    default = body(run(report("cancelled")))["data"]["reason"]
    assert default == "the provider reported the payment cancelled"


def test_a_repeated_status_changes_nothing_and_repeats_the_same_result() -> None:
    first = run(report("succeeded"))
    again = decide(report("succeeded", event="evt-again"), known=known_after(first, opened()))
    assert again.messages == [first.messages[-1]]
    assert not again.changed
    assert not again.transitions
    assert again.outcomes == [("payment.webhook.received", "duplicate")]


@pytest.mark.parametrize("closed", ["failed", "cancelled", "expired"])
def test_a_late_success_wins_over_a_closed_payment(closed: Status) -> None:
    plan = decide(report("succeeded"), known=with_status(opened(), closed))
    assert plan.changed["pay-1"].status == "succeeded"
    assert body(plan)["type"] == "payment.confirmed"
    assert [t.from_status for t in plan.late_successes] == [closed]


@pytest.mark.parametrize(("current", "reported"), [
    ("succeeded", "failed"), ("succeeded", "cancelled"), ("refunded", "succeeded"),
    ("failed", "cancelled"), ("expired", "failed"),
])  # fmt: skip
def test_a_refused_transition_changes_nothing(current: Status, reported: str) -> None:
    plan = decide(report(reported), known=with_status(opened(), current))
    assert not plan.changed
    assert not plan.transitions
    assert body(plan)["data"] == {
        "payment_id": "pay-1", "reason": "invalid_transition", "source_event_id": f"evt-{reported}",
        "detail": None,
    }  # fmt: skip
    assert plan.webhook_refusals == [("mock", "invalid_transition")]


@pytest.mark.parametrize("mismatch", [{"amount": 49901}, {"currency": "USD"}])
def test_a_webhook_whose_amount_or_currency_differs_is_refused(mismatch: dict[str, Any]) -> None:
    plan = run(report("succeeded", **mismatch))
    assert not plan.changed
    assert body(plan)["data"]["reason"] == "amount_mismatch"


def test_a_webhook_amount_is_read_in_the_providers_units() -> None:
    # ISK has no minor unit in ISO 4217, but Stripe takes it with two decimals (x100).
    requested = known_after(decide(open_payment(currency="ISK", amount=500, provider="stripe")))
    known = known_after(settle_session(requested.payments["pay-1"], session(), NOW), requested)
    paid = decide(report("succeeded", "mock_pay-1", amount=50000, currency="ISK",
                         provider="stripe"), known=known)  # fmt: skip
    assert paid.changed["pay-1"].status == "succeeded"
    short = decide(report("succeeded", "mock_pay-1", amount=500, currency="ISK",
                          provider="stripe"), known=known)  # fmt: skip
    assert body(short)["data"]["reason"] == "amount_mismatch"


def test_a_webhook_for_an_unknown_payment_or_another_provider_is_refused() -> None:
    for command in (report("succeeded", "mock_nope"), report("succeeded", provider="stripe")):
        plan = run(command)
        assert not plan.changed
        event = body(plan)
        assert event["data"] == {
            "payment_id": None, "reason": "unknown_payment", "source_event_id": "evt-succeeded",
            "detail": None,
        }  # fmt: skip
        assert event["subject"] == command.subject  # the webhook's key: no student is known


def test_a_signature_refusal_is_answered_and_counted() -> None:
    plan = decide(
        RefuseWebhook(
            "stripe", "stale_signature", "old", "evt-w", "payment.webhook.received", "pi_1", "tests"
        )
    )
    assert body(plan)["data"] == {
        "payment_id": None, "reason": "stale_signature", "source_event_id": "evt-w",
        "detail": None,
    }  # fmt: skip
    assert plan.webhook_refusals == [("stripe", "stale_signature")]


def test_rejection_ids_are_deterministic() -> None:
    command = RefuseWebhook(
        "mock", "invalid_signature", "", "evt-w", "payment.webhook.received", "x", "tests"
    )
    assert body(decide(command))["id"] == body(decide(command))["id"]
    other = RefuseWebhook(
        "mock", "invalid_signature", "", "evt-v", "payment.webhook.received", "x", "tests"
    )
    assert body(decide(command))["id"] != body(decide(other))["id"]


def paid() -> Known:
    known = opened()
    return known_after(decide(report("succeeded"), known=known), known)


def test_an_admin_refund_is_pending_until_the_provider_refunds_it_once() -> None:
    known = paid()
    plan = decide(refund(), known=known)
    assert not plan.changed  # still succeeded: the money has not moved yet
    assert not plan.messages
    assert plan.refunds["rf-1"].outcome == "pending"
    assert plan.calls == [GatewayCall("refund", "rf-1", "pay-1")]
    pending = known_after(plan, known)
    # A replay while pending is a duplicate with nothing to say yet; another refund id waits.
    replay = decide(refund(), known=pending)
    assert (replay.messages, replay.calls) == ([], [])
    assert replay.owed == {("refund", "rf-1"): 1}  # answered when the provider's answer is
    second = decide(refund("rf-2"), known=pending)
    assert body(second)["data"]["reason"] == "invalid_transition"
    assert not second.calls
    settled = settle_refund(
        pending.payments["pay-1"], "rf-1", pending.refunds["rf-1"], RefundReceipt("re_1"), NOW
    )
    assert settled.changed["pay-1"].status == "refunded"
    assert body(settled)["data"] == {
        "payment_id": "pay-1",
        "student_id": "stu-1",
        "status": "refunded",
        "reason": "duplicate purchase",
        "refunded_at": "2026-11-26T09:00:00Z",
    }
    assert settled.refunds_settled["rf-1"].outcome == "applied"
    done = known_after(settled, pending)
    again = decide(refund(), known=done)
    assert again.messages == settled.messages
    assert not again.calls
    assert body(decide(refund("rf-2"), known=done))["data"]["reason"] == "invalid_transition"


def test_a_refund_the_provider_refuses_is_rejected_with_its_reason() -> None:
    known = paid()
    pending = known_after(decide(refund(), known=known), known)
    settled = settle_refund(
        pending.payments["pay-1"], "rf-1", pending.refunds["rf-1"],
        Refused("stripe: charge already refunded"), NOW,
    )  # fmt: skip
    assert not settled.changed
    assert body(settled)["data"] == {
        "payment_id": "pay-1",
        "reason": "provider_refused",
        "source_event_id": "evt-rf-1",
        "detail": "stripe: charge already refunded",
    }
    assert settled.refunds_settled["rf-1"].outcome == "rejected"
    replay = decide(refund(), known=known_after(settled, pending))
    assert replay.messages == settled.messages


@pytest.mark.parametrize(("setup", "command", "reason"), [
    ("initiated", refund(), "invalid_transition"),
    ("failed", refund(), "invalid_transition"),
    ("succeeded", refund(pid="pay-404"), "unknown_payment"),
])  # fmt: skip
def test_a_refused_refund_is_remembered(setup: Status, command: RefundPayment, reason: str) -> None:
    known = with_status(opened(), setup)
    plan = decide(command, known=known)
    assert body(plan)["data"]["reason"] == reason
    assert not plan.changed
    assert not plan.calls
    # Even once the refund would be allowed, the same refund id repeats the refusal.
    later = with_status(known_after(plan, known), "succeeded")
    replay = decide(command, known=later)
    assert replay.messages == plan.messages
    assert not replay.changed


def test_a_refund_id_reused_for_another_payment_conflicts() -> None:
    known = paid()
    plan = decide(refund(), known=known)
    conflict = decide(refund(pid="pay-2"), known=known_after(plan, known))
    assert body(conflict)["data"]["reason"] == "idempotency_conflict"
    assert not conflict.refunds


def test_expiry_moves_only_open_payments_past_their_deadline() -> None:
    payment = opened().payments["pay-1"]
    due = _with(payment, expires_at=NOW - timedelta(seconds=1))
    plan = expire_payments(
        [due, _with(payment, payment_id="p-later", expires_at=NOW + timedelta(seconds=1)),
         _with(payment, payment_id="p-paid", status="succeeded", expires_at=NOW - timedelta(1))],
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
    first = run(failed, report("succeeded", event="evt-ok"))
    assert first.changed["pay-1"].status == "succeeded"
    again = decide(failed, known=known_after_webhooks(first, opened()))
    assert again.messages == [first.messages[0]]  # the payment.failed result, byte for byte
    assert again.outcomes == [("payment.webhook.received", "duplicate")]
    assert not again.webhook_refusals
    assert not again.changed


def known_after_webhooks(plan: PaymentPlan, known: Known) -> Known:
    after = known_after(plan, known)
    reported = ("succeeded", "failed", "cancelled")
    by_event = {
        (t.source_event_id, t.payment_id): t.result
        for t in plan.transitions
        if t.source_event_id and t.to_status in reported
    }
    return replace(after, webhooks=by_event)


def test_a_refund_refused_for_want_of_the_right_reserves_nothing() -> None:
    known = paid()
    squat = decide(refund(admin=False), known=known)
    assert body(squat)["data"]["reason"] == "not_authorized"
    assert not squat.refunds
    real = replace(refund(), source_event_id="evt-admin")
    plan = decide(real, known=known_after(squat, known))
    assert plan.refunds["rf-1"].outcome == "pending"
    assert [c.reference_id for c in plan.calls] == ["rf-1"]


def test_a_redelivered_repeat_keeps_its_first_answer_after_the_payment_moved_on() -> None:
    known = opened()
    paid_plan = decide(report("succeeded", event="evt-ok"), known=known)
    confirmed = paid_plan.messages[-1]
    after_paid = known_after(paid_plan, known)
    again = report("succeeded", event="evt-again")  # the provider notifies twice
    repeated = decide(again, known=after_paid)
    assert repeated.messages == [confirmed]
    later = with_status(known_after(repeated, after_paid), "refunded")
    redelivered = decide(again, known=later, now=NOW + timedelta(hours=1))
    assert redelivered.messages == [confirmed]  # not an invalid_transition: its first answer
    assert not redelivered.webhook_refusals


def test_a_redelivered_payment_conflict_repeats_its_first_answer_byte_for_byte() -> None:
    known = opened()
    conflicting = open_payment(amount=1, source_event_id="evt-conflict")
    first = decide(conflicting, known=known)
    assert body(first)["data"]["reason"] == "idempotency_conflict"
    again = decide(conflicting, known=known_after(first, known), now=NOW + timedelta(1))
    assert again.messages == first.messages
    assert again.outcomes == [("payment.requested", "duplicate")]


def test_a_refund_whose_subject_is_not_the_payments_student_is_bad_input() -> None:
    foreign = replace(refund(), subject="someone-else")
    plan = decide(foreign, refund("rf-2"), known=paid())
    assert plan.bad_input == [(foreign, "subject 'someone-else' is not the student of 'pay-1'")]
    assert plan.outcomes == [("payment.refund.requested", "applied")]  # the rest goes on
    assert [c.reference_id for c in plan.calls] == ["rf-2"]


# --- an instant provider (the mock): answers computed in the batch ------------------------------


class Instant:
    def session_now(self, request: SessionRequest) -> Session:
        return session(request.payment_id)

    def refund_now(self, request: RefundRequest) -> RefundReceipt:
        return RefundReceipt(f"re_{request.refund_id}")


INSTANT = replace(DEFAULTS, instant={"mock": Instant()})


def test_an_instant_providers_session_is_opened_and_announced_in_the_batch() -> None:
    plan = decide_payments([open_payment()], Known(), INSTANT, NOW)
    assert not plan.calls
    assert plan.created["pay-1"].provider_payment_id == "mock_pay-1"
    assert body(plan)["type"] == "payment.session.created"
    assert body(plan)["data"]["payment_url"] == "https://pay.test/mock_pay-1"
    # In the same batch, its webhook already finds it.
    paid = decide_payments([open_payment(), report("succeeded")], Known(), INSTANT, NOW)
    assert paid.created["pay-1"].status == "succeeded"
    # Another provider still goes through a call.
    assert decide_payments([open_payment(provider="stripe")], Known(), INSTANT, NOW).calls


def test_a_failed_attempt_on_a_payment_opened_in_the_batch_is_kept_with_the_new_payment() -> None:
    # The adapter writes created and changed payments in one statement, where an update cannot
    # see the row inserted beside it: a payment opened in the batch is never among the changed.
    plan = decide_payments(
        [open_payment(), report("attempt_failed", reason="declined")], Known(), INSTANT, NOW
    )
    assert plan.created["pay-1"].status_reason == "declined"
    assert plan.created["pay-1"].status == "initiated"
    assert not plan.changed
    assert plan.outcomes[-1] == ("payment.webhook.received", "applied")
    # And a success after it in the same batch: one row, written as it ends (before, the update
    # of the failed attempt, a statement after the insert, put `initiated` back over it).
    paid = decide_payments(
        [open_payment(), report("attempt_failed"), report("succeeded", event="evt-ok")],
        Known(), INSTANT, NOW,
    )  # fmt: skip
    assert paid.created["pay-1"].status == "succeeded"
    assert not paid.changed


def test_an_instant_providers_refund_is_applied_in_the_batch() -> None:
    plan = decide_payments([refund()], paid(), INSTANT, NOW)
    assert not plan.calls
    assert plan.changed["pay-1"].status == "refunded"
    assert plan.refunds["rf-1"].outcome == "applied"
    assert body(plan)["type"] == "payment.refunded"


def test_a_redelivered_webhook_refused_as_stale_now_keeps_the_move_it_first_made() -> None:
    """The same CloudEvent in a new record (re-sent by the ingress, replayed from the dead
    letters) is judged by its new append time, too late: its first answer still stands."""
    first = run(report("succeeded", event="evt-ok"))
    late = RefuseWebhook(
        "mock", "stale_signature", "too old", "evt-ok", "payment.webhook.received",
        "mock_pay-1", "tests",
    )  # fmt: skip
    again = decide(late, known=known_after_webhooks(first, opened()))
    assert again.messages == first.messages
    assert again.outcomes == [("payment.webhook.received", "duplicate")]
    assert not again.webhook_refusals


def test_a_redelivered_refund_judged_unauthorized_now_keeps_its_first_answer() -> None:
    """Its assertion expired before the new record of the event was appended, say."""
    known = paid()
    first = decide(refund(), known=known)
    assert first.refunds["rf-1"].outcome == "pending"
    later = known_after(first, known)
    again = decide(refund(admin=False), known=later)  # the same event id, evt-rf-1
    assert again.owed == {("refund", "rf-1"): 1}  # the pending refund's answer, when it comes
    assert not again.messages
    other = replace(refund(admin=False), source_event_id="evt-other")
    assert body(decide(other, known=later))["data"]["reason"] == "not_authorized"


def test_a_providers_event_id_repeats_only_for_the_payment_it_moved() -> None:
    known = opened("pay-1")
    known = known_after(decide(open_payment("pay-2"), known=known), known)
    known = known_after(settle_session(known.payments["pay-2"], session("pay-2"), NOW), known)
    # Two notifications that share an event id (a forger's, or a careless mock's): each
    # payment is judged on its own.
    first = decide(
        report("succeeded", event="e1", provider_event="n1"),
        report("succeeded", "mock_pay-2", event="e2", provider_event="n1"),
        known=known,
    )
    assert {p.status for p in first.changed.values()} == {"succeeded"}
    assert len(first.transitions) == 2
    # The first notification again, in a new event: its first result, nothing moves.
    again = decide(
        report("cancelled", event="e3", provider_event="n1"), known=known_after(first, known)
    )
    assert again.messages == [first.messages[0]]
    assert not again.changed
    # That event again in a new record, judged stale by then: the answer it got stands.
    stale = RefuseWebhook(
        "mock", "stale_signature", "too old", "e3", "payment.webhook.received", "mock_pay-1",
        "tests",
    )  # fmt: skip
    later = known_after(again, known_after(first, known))
    assert decide(stale, known=later).messages == [first.messages[0]]


def test_a_refund_repeating_another_events_decision_keeps_that_answer_when_judged_later() -> None:
    known = paid()
    pending = known_after(decide(refund(), known=known), known)
    settled = settle_refund(
        pending.payments["pay-1"], "rf-1", pending.refunds["rf-1"], RefundReceipt("re_1"), NOW
    )
    done = known_after(settled, pending)
    resent = replace(refund(), source_event_id="evt-2")  # the console sends rf-1 again
    repeat = decide(resent, known=done)
    assert repeat.messages == settled.messages
    later = replace(resent, authorized=False)  # evt-2 again, after its assertion expired
    assert decide(later, known=known_after(repeat, done)).messages == settled.messages
