"""Inputs at the broker's limits: a batch the client cannot read, values near the largest size."""

from __future__ import annotations

import json
from dataclasses import replace

from bench.workload import mock_ppid
from hypothesis import strategies as st

from tests.faults.hostile.coins import coin_event
from tests.faults.hostile.envelope import PLAIN, STRUCTURED, Draft
from tests.faults.hostile.model import Input, Webhook
from tests.faults.hostile.payments import opened
from tests.faults.hostile.values import Names, ids
from tests.faults.hostile.webhooks import signed


@st.composite
def unreadable_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """Records sent in one producer batch: a readable event (every other time), one whose
    header name is not UTF-8, and what follows it in the batch, which the client cannot read
    either (events as valid as the first)."""
    names = Names(tag)
    student = draw(ids(names("s")))
    draft, fact = draw(coin_event(names, "course.completed", student))
    draft = replace(draft, style=replace(draft.style, binary=False, ascii=True, forged_dlq=False))
    inputs = []
    if n % 2 == 0:
        before = draft.input("valid.before-unreadable", 2, fact)
        inputs.append(replace(before, headers=[], unreadable_batch=tag))
    following = [b"!unreadable"] + [
        replace(draft, event_id=f"{tag}.after{k}").encode()[1] for k in range((2, 1, 0)[n % 3])
    ]
    for value in following:
        inputs.append(Input("malformed.unreadable", "course.completed", student.encode(), value,
                            [], 2, unreadable_batch=tag))  # fmt: skip
    return inputs


def big_inputs(tag: str) -> list[Input]:
    """Values near the broker's limit: a verified 900 KB webhook for a payment of its own, a
    malformed 1 MB value, and one too large for its dead letter to keep whole."""
    student, payment_id = f"{tag}.student", f"{tag}.payment"
    data = {"payment_id": payment_id, "student_id": student, "course_id": "c", "amount": 1,
            "currency": "INR"}  # fmt: skip
    request = Draft("payment.requested", data, student, f"{tag}.e1", PLAIN)
    ppid = mock_ppid(payment_id)
    notification = {
        "id": f"{tag}.ntf_big",
        "type": "payment.succeeded",
        "padding": "ü" * 450_000,
        "data": {"provider_payment_id": ppid, "amount": 1, "currency": "INR"},
    }
    body = json.dumps(notification, ensure_ascii=False)
    notified = {"provider": "mock", "headers": {"Stripe-Signature": signed(body)}, "body": body}
    webhook = Draft("payment.webhook.received", notified, ppid, f"{tag}.e2", PLAIN)
    fact = Webhook(webhook.event, "valid", ppid, "succeeded", 1, "INR")
    return [
        request.input("valid.payment-request", 1, opened(request)),
        webhook.input("valid.webhook-900kb", 2, fact),
        Input("malformed.1mb", "coins.redemption.requested", b"big", b"x" * 1_000_000,
              STRUCTURED, 2),
        Input("malformed.too-big-to-copy", "course.completed", b"big", b"{" * 1_048_300,
              STRUCTURED, 3),
    ]  # fmt: skip
