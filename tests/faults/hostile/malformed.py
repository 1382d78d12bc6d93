"""Malformed input: a valid event with one thing broken, dead-lettered whatever the state."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.workload import mock_ppid
from hypothesis import strategies as st

from tests.faults.hostile.coins import coin_event
from tests.faults.hostile.envelope import ATTRIBUTES, MISSING, Draft, Raw, styles
from tests.faults.hostile.model import COIN_KINDS, JSON_SAFE_MAX, KINDS, PHASES, Input, again
from tests.faults.hostile.payments import payment_request
from tests.faults.hostile.values import Names, ids, students, texts
from tests.faults.hostile.webhooks import mock_body, signed, webhook

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers

# fmt: off
ID_FIELDS = {
    "course.completed": ("student_id", "course_id"),
    "referral.succeeded": ("referral_id", "referrer_id", "referred_student_id"),
    "coins.adjustment.requested": ("adjustment_id", "student_id"),
    "coins.redemption.requested": ("redemption_id", "student_id"),
    "payment.requested": ("payment_id", "student_id", "course_id"),
    "payment.webhook.received": (),
    "payment.refund.requested": ("refund_id", "payment_id"),
}
REQUIRED = {
    "course.completed": ("completed_at",),
    "referral.succeeded": (),
    "coins.adjustment.requested": ("amount", "reason", "actor"),
    "coins.redemption.requested": ("amount", "item"),
    "payment.requested": ("amount", "currency"),
    "payment.webhook.received": ("provider", "headers", "body"),
    "payment.refund.requested": ("reason", "actor"),
}
BAD_IDS = ["", "x" * 129, "ü" * 129, "a\x00b", "line\nbreak", "\x7f", "tab\t", "\x1b[31m", 7,
           None, ["x"], {"id": "x"}, Raw('"a\\ud800b"'), Raw('"\\udfff"')]
BAD_AMOUNTS = [0, -1, Raw("-0"), 1.0, 1.5, Raw("1e2"), "10", True, JSON_SAFE_MAX + 1,
               -(JSON_SAFE_MAX + 1), 10**30, Raw("1e400"), Raw("NaN"), Raw("-Infinity"), None, [1]]
BAD_TEXTS = [None, 5, "x" * 1001, "a\x00b", ["x"], {"a": 1}]
# Not integers: pydantic would read a number (or a string of digits) as Unix seconds.
BAD_TIMES: list[Any] = ["yesterday", "2026-11-26T09:00:00", "2026-02-30T09:00:00Z", "", None, [],
                        "now"]
BAD_FIELDS: dict[str, dict[str, list[Any]]] = {
    "course.completed": {"completed_at": BAD_TIMES, "course_tier": [5, "x" * 1001, "\x00"]},
    "referral.succeeded": {"reward_coins": [v for v in BAD_AMOUNTS if v is not None]},
    "coins.adjustment.requested": {
        "amount": [0, Raw("-0"), 1.5, "5", False, JSON_SAFE_MAX + 1, -(JSON_SAFE_MAX + 1), None,
                   Raw("1e400"), Raw("-1.0")],
        "reason": BAD_TEXTS,
        "actor": [None, "admin", [], {"id": "x"}, {"role": "admin"}, {"id": "", "role": "admin"},
                  {"id": "a\x00", "role": "admin"}, {"id": "x", "role": None}],
    },
    "coins.redemption.requested": {"amount": BAD_AMOUNTS, "item": BAD_TEXTS},
    "payment.requested": {
        "amount": BAD_AMOUNTS,
        "currency": ["", "RUPEE", "IN", "12A", "ÎNR", 5, None, "IN\x00"],
        "description": [5, "x" * 1001, "\x00"],
    },
    "payment.webhook.received": {
        "provider": ["paypal", "", "MOCK", "Stripe", None, 5],
        "headers": [None, "Stripe-Signature: x", ["a"], {"Stripe-Signature": 5},
                    {"Stripe-Signature": None}, Raw('{"k":"\\ud800"}')],
        "body": [None, 5, {"id": "x"}, Raw('"\\ud800"'), ["x"]],
    },
    "payment.refund.requested": {"reason": BAD_TEXTS, "actor": [None, {}, {"id": "x"}, "admin"]},
}
BAD_ATTRIBUTES: dict[str, list[Any]] = {
    "specversion": ["0.3", "1", "", "1.0 ", 1.0, None],
    "id": ["", "x" * 129, "a\x00b", "\x1f", "\x7f", "é" * 129, 5, None, Raw('"\\ud800"')],
    "type": ["coins.gifted", "", "a\x00", "COURSE.COMPLETED", None],
    "source": ["", "a\nb", "x" * 1001, 5, None],
    "subject": ["", "a\x00", "\x1b[31m", 5, None],
    "time": BAD_TIMES,
    "datacontenttype": ["text/plain", "application/xml", "", None],
}
MUTATIONS = ("not utf-8", "not json", "not an object", "no value", "deep", "attribute",
             "missing attribute", "other type", "repeated member", "data", "missing field",
             "data not an object", "key", "subject", "binary header", "data", "attribute")
# fmt: on


@st.composite
def valid_draft(draw: st.DrawFn, names: Names, kind: str) -> Draft:
    student = draw(students(names))
    if kind in COIN_KINDS:
        return draw(coin_event(names, kind, student))[0]
    if kind == "payment.requested":
        return draw(payment_request(names, student))
    if kind == "payment.webhook.received":
        ppid = mock_ppid(names("p"))
        body = mock_body(draw, names, ppid, "succeeded", 100, "INR")
        return webhook(draw, names, ppid, body, {"Stripe-Signature": signed(body)})
    data = {
        "refund_id": draw(ids(names("f"))),
        "payment_id": draw(ids(names("p"))),  # never opened: the subject is not checked
        "reason": draw(texts()),
        "actor": {"id": "staff", "role": "admin"},
    }
    return Draft(kind, data, student, draw(ids(names("e"))), draw(styles))


@st.composite
def malformed_scenario(draw: st.DrawFn, tag: str, n: int) -> list[Input]:
    """One record broken in one way (every kind of bad input in turn), maybe redelivered."""
    names = Names(tag)
    kind, how = KINDS[n % len(KINDS)], MUTATIONS[n % len(MUTATIONS)]
    draft = draw(valid_draft(names, kind))
    if how == "subject" and kind == "payment.refund.requested":
        how = "key"  # a refund's data names no student the edge could check
    key, value, headers = _record(draw, draft, how)
    bad = Input(f"malformed.{how.replace(' ', '-')}", kind, key, value, headers,
                draw(st.sampled_from(PHASES)))  # fmt: skip
    return [bad] + [again(bad, bad.phase) for _ in range(draw(st.integers(0, 1)))]


def _record(draw: st.DrawFn, draft: Draft, how: str) -> Record:
    """`draft` encoded, then broken as `how` says: in its bytes, key or headers, or as a draft."""
    key: bytes | None
    value: bytes | None
    key, value, headers = draft.encode()
    if how == "not utf-8":
        at = draw(st.integers(0, len(value)))
        value = (
            value[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + value[at:]
        )
    elif how == "not json":
        value = value[: draw(st.integers(0, len(value) - 1))]
    elif how == "not an object":
        value = draw(st.sampled_from([b"[]", b"[1,2,3]", b"42", b'"event"', b"null", b"true"]))
    elif how == "no value":
        value = None
    elif how == "deep":
        value = b"[" * 100_000 + b"]" * 100_000
    elif how == "key":
        key = draw(st.sampled_from([None, b"", b"\xff\xfe", key + b" ", key.upper() + b"\xc3\xa9"]))
    elif how == "subject":  # key and subject agree, but the data is about someone else
        subject = draft.subject + draw(st.sampled_from(["·", " ", "\u200b"]))
        key, value, headers = replace(draft, subject=subject).encode()
    elif how == "binary header":
        key, value, headers = replace(draft, style=replace(draft.style, binary=True)).encode()
        headers = _bad_header(draw, headers)
    else:
        key, value, headers = draw(broken(draft, how)).encode()
    return key, value, headers


def _bad_header(draw: st.DrawFn, headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Binary-mode headers with one defect: a value not UTF-8, an attribute twice, or a
    content type other than JSON."""
    defect = draw(st.sampled_from(["not utf-8", "twice", "content type"]))
    if defect == "not utf-8":
        return [(h, b"\xff\xfe" if h == "ce_source" else v) for h, v in headers]
    if defect == "twice":
        return [*headers, next(h for h in headers if h[0] == "ce_id")]
    return [(h, b"text/plain" if h == "content-type" else v) for h, v in headers]


@st.composite
def broken(draw: st.DrawFn, draft: Draft, how: str) -> Draft:
    kind, data = draft.kind, draft.data
    if how == "attribute":
        name = draw(st.sampled_from(ATTRIBUTES))
        bad = draw(st.sampled_from(BAD_ATTRIBUTES[name]))
        if draft.style.binary and not isinstance(bad, str):
            bad = MISSING  # a header is text: leave it out instead
        if name == "type" and bad == "COURSE.COMPLETED":
            bad = kind.upper()
        return replace(draft, attributes={name: bad})
    if how == "missing attribute":
        return replace(draft, attributes={draw(st.sampled_from(ATTRIBUTES)): MISSING})
    if how == "other type":
        other = draw(st.sampled_from([k for k in KINDS if k != kind]))
        return replace(draft, attributes={"type": other})
    if how == "repeated member":
        places = ["envelope", "data", "actor"] if "actor" in data else ["envelope", "data"]
        return replace(draft, repeated=draw(st.sampled_from(places)))
    if how == "data not an object":
        return replace(draft, data=draw(st.sampled_from([None, [], "data", 5, [data]])))
    if how == "missing field":
        required = [*ID_FIELDS[kind], *REQUIRED[kind]]
        if not required:  # a referral: every field is an id
            required = list(ID_FIELDS["referral.succeeded"])
        return replace(draft, data={**data, draw(st.sampled_from(required)): MISSING})
    fields = {**{name: BAD_IDS for name in ID_FIELDS[kind]}, **BAD_FIELDS[kind]}
    name = draw(st.sampled_from(sorted(fields)))
    bad = draw(st.sampled_from(fields[name]))
    if bad is None and draw(st.booleans()):
        bad = MISSING  # every None above is for a required field
    return replace(draft, data={**data, name: bad})
