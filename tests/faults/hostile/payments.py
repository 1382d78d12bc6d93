"""Payment scenarios: opened in phase 1, notified in phase 2, refunded in phase 3."""

from __future__ import annotations

from dataclasses import replace

from bench.workload import mock_ppid
from hypothesis import strategies as st

from tests.faults.hostile.envelope import MISSING, Draft, styles
from tests.faults.hostile.model import (
    JSON_SAFE_MAX,
    WEBHOOK_SECRET,
    Fact,
    Input,
    OpenPayment,
    Refund,
    Webhook,
    again,
)
from tests.faults.hostile.values import (
    POOL,
    ROLES_NOT_ADMIN,
    Names,
    currencies,
    ids,
    money,
    roles,
    students,
    texts,
)
from tests.faults.hostile.webhooks import (
    bad_mock_body,
    forged_headers,
    mock_body,
    signature_headers,
    signed,
    webhook,
)
from worker.core.signatures import razorpay_signature

PAYMENT_ACTIONS = ("webhook", "mismatch", "forged", "unconfigured", "redelivery",
                   "request again", "conflict", "webhook subject", "webhook body")  # fmt: skip
REFUND_ACTIONS = ("refund", "not admin", "wrong subject", "again", "other payment",
                  "redelivery")  # fmt: skip


@st.composite
def payment_request(
    draw: st.DrawFn, names: Names, student: str, payment_id: str | None = None
) -> Draft:
    data = {
        "payment_id": payment_id or draw(ids(names("p"))),
        "student_id": student,
        "course_id": draw(ids(names("c"))),
        "amount": draw(money),
        "currency": draw(currencies),
        "description": draw(st.one_of(st.just(MISSING), texts())),
    }
    return Draft("payment.requested", data, student, draw(ids(names("e"))), draw(styles))


def opened(draft: Draft) -> OpenPayment:
    data = draft.data
    return OpenPayment(
        draft.event,
        data["payment_id"],
        data["student_id"],
        data["course_id"],
        data["amount"],
        data["currency"].upper(),
    )


@st.composite
def payment_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """A payment opened in phase 1; notified, replayed, forged... in 2; refunded in 3."""
    names = Names(tag)
    draft = draw(payment_request(names, draw(students(names))))
    payment = opened(draft)
    inputs = [draft.input("valid.payment-request", 1, payment)]
    extra = draw(st.lists(st.sampled_from(PAYMENT_ACTIONS), max_size=4))
    for action in [PAYMENT_ACTIONS[n % len(PAYMENT_ACTIONS)], "webhook", *extra]:
        inputs.append(draw(payment_action(names, action, payment, inputs)))
    extra = draw(st.lists(st.sampled_from(REFUND_ACTIONS), max_size=2))
    for action in ["refund", REFUND_ACTIONS[n % len(REFUND_ACTIONS)], *extra]:
        inputs.append(draw(refund_action(names, action, payment, inputs)))
    return inputs


@st.composite
def payment_action(
    draw: st.DrawFn, names: Names, action: str, payment: OpenPayment, earlier: list[Input]
) -> Input:
    """Phase 2: something about `payment`, opened in phase 1."""
    if action == "redelivery":
        return again(draw(st.sampled_from(earlier)), 2)
    if action in ("request again", "conflict"):
        return _request_again(draw, names, action, payment)
    ppid = mock_ppid(payment.payment_id)
    status = draw(st.sampled_from(["succeeded", "failed", "cancelled"]))
    amount = payment.amount
    currency = draw(st.sampled_from([payment.currency, payment.currency.lower()]))
    if action == "webhook subject":  # verified, but keyed by another than the body names
        body = mock_body(draw, names, ppid, status, amount, currency)
        other = draw(st.sampled_from([ppid + "x", mock_ppid(payment.payment_id + "x"), " "]))
        draft = webhook(draw, names, other, body, {"Stripe-Signature": signed(body)})
        return draft.input("malformed.webhook-subject", 2, None)
    if action == "webhook body":  # verified, but not what the mock provider sends
        body = draw(bad_mock_body(ppid, amount, currency))
        draft = webhook(draw, names, ppid, body, {"Stripe-Signature": signed(body)})
        return draft.input("malformed.webhook-body", 2, None)
    return _notification(draw, names, action, payment, status, currency)


def _request_again(draw: st.DrawFn, names: Names, action: str, payment: OpenPayment) -> Input:
    """`payment` requested again: the same, or ("conflict") with one thing changed."""
    change = draw(st.sampled_from(["amount", "course", "currency", "student"]))
    student = draw(students(names)) if action == "conflict" and change == "student" else None
    draft = draw(payment_request(names, student or payment.student, payment.payment_id))
    currency = draw(st.sampled_from([payment.currency, payment.currency.lower()]))
    data = {**draft.data, "course_id": payment.course, "amount": payment.amount,
            "currency": currency}  # fmt: skip
    if action == "conflict" and change == "amount":
        data["amount"] = payment.amount % JSON_SAFE_MAX + 1
    elif action == "conflict" and change == "course":
        data["course_id"] = payment.course[:127] + ("~" if payment.course[127:] == "·" else "·")
    elif action == "conflict" and change == "currency":
        data["currency"] = "CHF"  # drawn payments are never in francs
    draft = replace(draft, data=data)
    return draft.input("valid.payment-" + action.replace(" ", "-"), 2, opened(draft))


def _notification(
    draw: st.DrawFn, names: Names, action: str, payment: OpenPayment, status: str, currency: str
) -> Input:
    """The provider's word on `payment`: signed, of another amount, forged, or unconfigured."""
    ppid, amount = mock_ppid(payment.payment_id), payment.amount
    if action == "mismatch":
        if draw(st.booleans()):
            amount = amount - 1 if amount > 1 else amount + 1
        else:
            currency = "CHF"  # drawn payments are never in francs
    body = mock_body(draw, names, ppid, status, amount, currency)
    headers, signature, provider = draw(signature_headers(body)), "valid", "mock"
    if action == "forged":
        headers, signature = draw(forged_headers(body))
        if draw(st.booleans()):  # a body whose signature fails is never read
            body = draw(st.sampled_from(["", "not json", "{}", '{"id":1,"id":2}', "[" * 5000]))
            headers = {"Stripe-Signature": signed(body, secret="whsec_guess")}
            signature = "invalid_signature"
    elif action == "unconfigured":  # a provider without a secret refuses every webhook
        provider, signature = draw(st.sampled_from(["stripe", "razorpay"])), "invalid_signature"
        if provider == "razorpay":
            headers = {"X-Razorpay-Signature": razorpay_signature(body, WEBHOOK_SECRET)}
    draft = webhook(draw, names, ppid, body, headers, provider)
    fact = Webhook(draft.event, signature, ppid, status, amount, currency.upper())
    return draft.input(f"valid.webhook-{action}", 2, fact)


@st.composite
def refund_action(
    draw: st.DrawFn, names: Names, action: str, payment: OpenPayment, earlier: list[Input]
) -> Input:
    """Phase 3: a refund of `payment` (or of its refund id for a payment never opened)."""
    refunds = [i for i in earlier if isinstance(i.fact, Refund)]
    if action == "redelivery" and refunds:
        return again(draw(st.sampled_from(refunds)), 3)
    refund_id = draw(ids(names("f")))
    payment_id, subject, role = payment.payment_id, payment.student, "admin"
    if action in ("again", "other payment") and refunds:
        last = refunds[-1].fact
        assert isinstance(last, Refund)
        refund_id = last.refund_id
        if action == "other payment":  # never opened: the subject is not checked against it
            payment_id = draw(ids(names("p")))
    elif action == "not admin":
        role = draw(st.sampled_from(ROLES_NOT_ADMIN))
    elif action == "wrong subject":
        subject = draw(st.sampled_from([s for s in POOL if s != payment.student]))
        role = draw(roles)
    else:
        action = "refund"
    data = {
        "refund_id": refund_id,
        "payment_id": payment_id,
        "reason": draw(texts()),
        "actor": {"id": draw(ids(names("a"))), "role": role},
    }
    draft = Draft("payment.refund.requested", data, subject, draw(ids(names("e"))), draw(styles))
    fact = Refund(draft.event, refund_id, payment_id, subject, role == "admin")
    return draft.input("valid.refund-" + action.replace(" ", "-"), 3, fact)


@st.composite
def new_payment_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """Phase 2: a payment opened among everything else, requested again by its student."""
    names = Names(tag)
    draft = draw(payment_request(names, draw(students(names))))
    first = draft.input("valid.payment-request", 2, opened(draft))
    inputs = [first]
    for follow in draw(st.lists(st.sampled_from(["again", "redelivery", "conflict"]), max_size=3)):
        if follow == "redelivery":
            inputs.append(again(first, 2))
            continue
        data = dict(draft.data)
        if follow == "conflict":
            data["amount"] = data["amount"] % JSON_SAFE_MAX + 1
        other = replace(draft, data=data, event_id=draw(ids(names("e"))), style=draw(styles))
        inputs.append(other.input(f"valid.payment-{follow}", 2, opened(other)))
    return inputs


@st.composite
def unknown_payment_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """A verified webhook for a payment never opened (phase 2), or a refund of one (phase 3)."""
    names = Names(tag)
    fact: Fact
    if n % 2 == 0:
        ppid = draw(st.one_of(ids(names("pp")), st.just(mock_ppid(names("p")))))
        body = mock_body(draw, names, ppid, "succeeded", 100, "INR")
        draft = webhook(draw, names, ppid, body, draw(signature_headers(body)))
        fact = Webhook(draft.event, "valid", ppid, "succeeded", 100, "INR")
        first = draft.input("valid.webhook-unknown", 2, fact)
    else:
        subject, role = draw(students(names)), draw(roles)
        refund_id, payment_id = draw(ids(names("f"))), draw(ids(names("p")))
        data = {
            "refund_id": refund_id,
            "payment_id": payment_id,
            "reason": draw(texts()),
            "actor": {"id": "staff", "role": role},
        }
        draft = Draft(
            "payment.refund.requested", data, subject, draw(ids(names("e"))), draw(styles)
        )
        fact = Refund(draft.event, refund_id, payment_id, subject, role == "admin")
        first = draft.input("valid.refund-unknown", 3, fact)
    return [first] + [again(first, first.phase) for _ in range(draw(st.integers(0, 1)))]
