"""A hostile stream: Hypothesis-drawn inputs of every kind, each with the one outcome it must get.

`draw_stream` draws scenarios (a few related inputs each: a coin event with its duplicates,
redeliveries and conflicts; a payment's life; one malformed record...) and `resolve` works out,
for every input, either that it must be dead-lettered or which results it may get.

The stream comes in three phases, each sent once the worker has answered the one before:
(1) payments are opened and some wallets funded, (2) webhooks, coin events, more payment
requests, (3) refunds. So whether a webhook or a refund finds its payment never depends on the
order in which the worker reads different topics, which it does not promise. Within a phase,
an input whose outcome depends on an earlier one shares its topic and key with it (one
partition, in order); where an outcome depends on other topics (a debit on the credits before
it), every result it could get is allowed.

Every variant of every kind of scenario (`PLAN`: which event type, amount and follow-up; which
mutation of which event type; which payment action...) is drawn a fixed number of times, so
that every run covers all of them; Hypothesis draws everything else (ids, amounts, spellings,
encodings...), the same way on every run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from bench.workload import mock_ppid
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.events import TIME_UNIX
from worker.core.signatures import razorpay_signature, stripe_signature

JSON_SAFE_MAX = 9_007_199_254_740_991
# COIN_MAX_AMOUNT of the worker under test: two credits of it overflow any wallet
# (2 * 2**52 > JSON_SAFE_MAX), so that refusal really happens.
COIN_MAX = 2**52
COURSE_REWARD = 100  # COIN_REWARD_COURSE_COMPLETION's default
REFERRAL_REWARD = 50  # COIN_REWARD_REFERRAL's default
WEBHOOK_SECRET = "whsec_hostile_stream"
TOLERANCE = 300  # PAYMENT_WEBHOOK_TOLERANCE_SECONDS' default
STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]
PHASES = (1, 2, 3)

COIN_KINDS = (
    "course.completed",
    "referral.succeeded",
    "coins.adjustment.requested",
    "coins.redemption.requested",
)
KINDS = (*COIN_KINDS, "payment.requested", "payment.webhook.received", "payment.refund.requested")
LEDGER_TYPES = dict(
    zip(
        COIN_KINDS,
        ("course_completion", "referral", "manual_adjustment", "redemption"),
        strict=True,
    )
)

Label = tuple[str, str | None]  # a result: its topic and, for a refusal, the reason
EventKey = tuple[str, str]  # CloudEvents (source, id): what a redelivery is recognised by


@dataclass(frozen=True)
class Expect:
    """What an input must get: a dead letter (`labels` None), or one result among `labels`."""

    labels: frozenset[Label] | None

    @property
    def dead(self) -> bool:
        return self.labels is None


DEAD = Expect(None)


def results(*labels: Label) -> Expect:
    return Expect(frozenset(labels))


def refused(topic: str, reason: str) -> Label:
    return (topic, reason)


CREDITED: Label = ("coins.credited", None)
DEBITED: Label = ("coins.debited", None)
SESSION: Label = ("payment.session.created", None)
STATUS_LABELS: dict[str, Label] = {
    "succeeded": ("payment.confirmed", None),
    "failed": ("payment.failed", None),
    "cancelled": ("payment.cancelled", None),
    "refunded": ("payment.refunded", None),
}
# CONTRACT section 5: the moves a payment may make (expiry plays no part: the TTL is 30 min).
MOVES = {
    "initiated": {"succeeded", "failed", "cancelled"},
    "succeeded": {"refunded"},
    "failed": {"succeeded"},
    "cancelled": {"succeeded"},
    "refunded": set(),
}
COIN_REFUSALS = ("insufficient_balance", "idempotency_conflict", "not_authorized", "limit_exceeded")
PAYMENT_REFUSALS = ("idempotency_conflict", "invalid_signature", "stale_signature",
                    "unknown_payment", "invalid_transition", "amount_mismatch",
                    "not_authorized")  # fmt: skip
# Every kind of result the stream must provoke (checked against what the worker published).
PROVOKED: frozenset[Label] = frozenset(
    {CREDITED, DEBITED, SESSION, *STATUS_LABELS.values()}
    | {("coins.rejected", reason) for reason in COIN_REFUSALS}
    | {("payment.rejected", reason) for reason in PAYMENT_REFUSALS}
)


# What the resolver needs to know of an input that passes the worker's edge.


@dataclass(frozen=True)
class Coin:
    event: EventKey
    student: str
    ledger_type: str
    reference: str
    amount: int  # signed, as it would be applied
    requested: int | None  # as stated; None when the reward comes from configuration
    authorized: bool = True
    over_limit: bool = False


@dataclass(frozen=True)
class OpenPayment:
    event: EventKey
    payment_id: str
    student: str
    course: str
    amount: int
    currency: str  # upper case, as the worker keeps it


@dataclass(frozen=True)
class Webhook:
    event: EventKey
    signature: str  # "valid", "invalid_signature" or "stale_signature"
    ppid: str
    status: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Refund:
    event: EventKey
    refund_id: str
    payment_id: str
    subject: str
    authorized: bool


Fact = Coin | OpenPayment | Webhook | Refund


@dataclass
class Input:
    """One Kafka record to send, and (once resolved) the outcome it must get."""

    kind: str  # what it is, for the report: "valid.coin", "malformed.data", ...
    topic: str  # the event type; the worker's topic is its prefix and this
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    phase: int
    fact: Fact | None = None  # None: bad input at the edge, whatever the state
    unreadable_batch: str | None = None  # sent in one producer batch by tests.raw_records
    expect: Expect = DEAD


# Ids: unique by a prefix that ends at its first ":", then short, non-ASCII or 128 characters.
CONTROL = "".join(map(chr, [*range(0x20), 0x7F]))
SAFE = st.characters(codec="utf-8", exclude_characters=CONTROL)  # no control, no surrogate

# A pool of students any scenario may pick, so that conflicts, overflows and insufficient
# balances really happen; each is an extreme of what an id may be.
POOL = (
    "s",
    "S" * 128,
    "ü" * 128,
    "😀" * 128,  # 128 characters, 512 UTF-8 bytes
    "学生" + "漢" * 126,
    "a\u0085b\u2028c\u2029d\ufeffe\u200bf\u202eg\u00a0h",  # C1 NEL and other invisible ones
    "'; DROP TABLE coin_wallets; --",
    '"quoted" \\u0000 \\',
    "e\u0301",  # decomposed: not the same student as the next one
    "\u00e9",
    "\U0010fffd\uffff\ufffd",
    " ",
)


def ids(prefix: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(prefix),
        st.text(SAFE, min_size=1, max_size=8).map(lambda t: prefix + t),
        st.text(SAFE, min_size=1, max_size=3).map(lambda t: (prefix + t * 128)[:128]),
    )


def texts(max_size: int = 1000) -> st.SearchStrategy[str]:
    """Free text (a reason, an item): empty, short, or exactly `max_size` characters."""
    return st.one_of(
        st.just(""),
        st.text(SAFE, min_size=1, max_size=6),
        st.text(SAFE, min_size=1, max_size=3).map(lambda t: (t * max_size)[:max_size]),
    )


class Names:
    """Unique id prefixes within one scenario (its tag makes them unique in the stream)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.count = 0

    def __call__(self, what: str) -> str:
        self.count += 1
        return f"{self.tag}.{what}{self.count}:"


def students(names: Names) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(POOL), ids(names("s")))


# Amounts: the extremes the CONTRACT names, often, and anything in between.
EXTREMES = (1, COIN_MAX, COIN_MAX + 1, JSON_SAFE_MAX)
coin_amounts = st.one_of(
    st.sampled_from([*EXTREMES, *EXTREMES, COURSE_REWARD, REFERRAL_REWARD]),
    st.integers(1, COIN_MAX),
)
money = st.one_of(st.sampled_from([1, 49_900, JSON_SAFE_MAX]), st.integers(1, JSON_SAFE_MAX))
currencies = st.sampled_from(["INR", "inr", "Usd", "EUR", "JPY"])
ROLES_NOT_ADMIN = ("student", "Admin", "ADMIN", "admin ", " admin", "", "админ", "service")
roles = st.one_of(st.just("admin"), st.sampled_from(ROLES_NOT_ADMIN))


# The envelope: CloudEvents attributes in structured or binary mode, in many valid spellings.

# One instant, four spellings: webhook signatures are checked against the event's `time`.
TIMES = (
    "2026-11-26T09:00:00Z",
    "2026-11-26T14:30:00+05:30",
    "2026-11-26T04:00:00-05:00",
    "2026-11-26T09:00:00.000000+00:00",
)
SOURCES = (
    "tests/hostile-stream",
    "https://ingress.example/ünïcode/" + "ß" * 900,
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
)
ATTRIBUTES = ("specversion", "id", "type", "source", "time", "subject", "datacontenttype")
# Headers by which an input would say where it failed: the worker drops them from its copy.
FORGED_DLQ_HEADERS = [("dlq.source.offset", b"0"), ("DLQ.Source.Topic", b"elsewhere")]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True)
class Style:
    binary: bool
    ascii: bool  # JSON with \u escapes only, or raw UTF-8
    time: str
    source: str
    order: tuple[str, ...]  # of the attributes and data in a structured value
    extension: bool  # carries a `traceparent` extension attribute
    forged_dlq: bool


styles = st.builds(
    Style,
    binary=st.booleans(),
    ascii=st.booleans(),
    time=st.sampled_from(TIMES),
    source=st.sampled_from(SOURCES),
    order=st.permutations((*ATTRIBUTES, "data")).map(tuple),
    extension=st.booleans(),
    forged_dlq=st.sampled_from([False, False, False, True]),
)
PLAIN = Style(False, False, TIMES[0], SOURCES[0], (*ATTRIBUTES, "data"), False, False)


class Raw:
    """JSON text put into a document as it is (what `json.dumps` cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


MISSING: Any = object()  # an attribute or member left out


def dumps(document: Any, *, ascii: bool) -> str:
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@hostile-raw-{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items() if v is not MISSING}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(document), ensure_ascii=ascii, separators=(",", ":"))
    for n, raw in enumerate(raws):
        text = text.replace(f'"@@hostile-raw-{n}@@"', raw)
    return text


def repeat_member(text: str, where: str, data: dict[str, Any]) -> str:
    """`text` with a member name repeated: in the envelope, in `data`, or in the actor."""
    if where == "envelope":
        return '{"specversion":"1.0",' + text[1:]
    if where == "actor":
        at = text.index('"actor":{') + len('"actor":{')
        return text[:at] + '"role":"admin",' + text[at:]
    name, value = next(iter(data.items()))
    member = json.dumps(name) + ":" + json.dumps(value) + ","
    at = text.index('"data":{') + len('"data":{') if '"data":{' in text else 1
    return text[:at] + member + text[at:]


@dataclass
class Draft:
    """An event before it is encoded; malformed inputs are drafts with something broken."""

    kind: str
    data: Any
    subject: str
    event_id: str
    style: Style
    attributes: dict[str, Any] = field(default_factory=dict)  # overrides (MISSING: left out)
    repeated: str | None = None  # where a member name is repeated

    @property
    def event(self) -> EventKey:
        return (self.style.source, self.event_id)

    def encode(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        style = self.style
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.event_id,
            "type": self.kind,
            "source": style.source,
            "time": style.time,
            "subject": self.subject,
            "datacontenttype": "application/json",
            **self.attributes,
        }
        forged = FORGED_DLQ_HEADERS if style.forged_dlq else []
        if style.binary:
            headers = [
                ("content-type" if name == "datacontenttype" else f"ce_{name}", str(value).encode())
                for name in style.order
                if name != "data" and (value := attributes.get(name, MISSING)) is not MISSING
            ]
            if style.extension:
                headers.append(("ce_traceparent", TRACEPARENT.encode()))
            text = dumps(self.data, ascii=style.ascii)
            if self.repeated:
                where = "data" if self.repeated == "envelope" else self.repeated
                text = repeat_member(text, where, self.data)
            return self.subject.encode(), text.encode(), headers + forged
        document = {
            name: self.data if name == "data" else attributes.get(name, MISSING)
            for name in style.order
        }
        if style.extension:
            document["traceparent"] = TRACEPARENT
        text = dumps(document, ascii=style.ascii)
        if self.repeated:
            text = repeat_member(text, self.repeated, self.data)
        return self.subject.encode(), text.encode(), STRUCTURED + forged

    def input(self, kind: str, phase: int, fact: Fact | None) -> Input:
        key, value, headers = self.encode()
        return Input(kind, self.kind, key, value, headers, phase, fact)


def again(original: Input, phase: int) -> Input:
    """A redelivery: the same record, byte for byte, later."""
    return replace(original, kind=original.kind.split(".")[0] + ".redelivery", phase=phase)


# Coin events.


@st.composite
def coin_event(
    draw: st.DrawFn, names: Names, kind: str, student: str, amount: int | None = None
) -> tuple[Draft, Coin]:
    """A valid coin event; `amount` (else drawn) is what it states, if it states one."""
    reference = draw(ids(names("r")))
    stated: int | None = amount if amount is not None else draw(coin_amounts)
    data: dict[str, Any]
    role = "admin"
    if kind == "course.completed":
        data = {
            "student_id": student,
            "course_id": reference,
            "completed_at": draw(st.sampled_from(TIMES)),
            "course_tier": draw(st.one_of(st.just(MISSING), texts())),
        }
        stated, applied = None, COURSE_REWARD
    elif kind == "referral.succeeded":
        stated = draw(st.sampled_from([None, stated]))
        data = {
            "referral_id": reference,
            "referrer_id": student,
            "referred_student_id": draw(st.one_of(st.just(student), ids(names("f")))),
            "reward_coins": MISSING if stated is None else stated,
        }
        applied = stated or REFERRAL_REWARD
    elif kind == "coins.adjustment.requested":
        assert stated is not None
        stated *= draw(st.sampled_from([1, -1]))
        role = draw(roles)
        data = {
            "adjustment_id": reference,
            "student_id": student,
            "amount": stated,
            "reason": draw(texts()),
            "actor": {"id": draw(ids(names("a"))), "role": role},
        }
        applied = stated
    else:
        data = {
            "redemption_id": reference,
            "student_id": student,
            "amount": stated,
            "item": draw(texts()),
        }
        assert stated is not None
        applied = -stated
    draft = Draft(kind, data, student, draw(ids(names("e"))), draw(styles))
    fact = Coin(
        event=draft.event,
        student=student,
        ledger_type=LEDGER_TYPES[kind],
        reference=reference,
        amount=applied,
        requested=stated,
        authorized=role == "admin",
        over_limit=abs(stated or 0) > COIN_MAX,
    )
    return draft, fact


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


# Payments: opened in phase 1, notified in phase 2, refunded in phase 3.


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


def mock_body(draw: st.DrawFn, ppid: str, status: str, amount: int, currency: str) -> str:
    """The mock provider's notification (CONTRACT section 5)."""
    body = {
        "id": f"ntf_{draw(st.integers(0, 10**9))}",
        "type": f"payment.{status}",
        "data": {
            "provider_payment_id": ppid,
            "amount": amount,
            "currency": currency,
            "reason": draw(st.one_of(st.just(MISSING), texts(200))),
        },
    }
    return dumps(body, ascii=draw(st.booleans()))


def signed(body: str, at: int = TIME_UNIX, secret: str = WEBHOOK_SECRET) -> str:
    return stripe_signature(body, secret, at)


def webhook(
    draw: st.DrawFn, names: Names, subject: str, body: str, headers: dict[str, str],
    provider: str = "mock",
) -> Draft:  # fmt: skip
    data = {"provider": provider, "headers": headers, "body": body}
    return Draft("payment.webhook.received", data, subject, draw(ids(names("e"))), draw(styles))


@st.composite
def signature_headers(draw: st.DrawFn, body: str) -> dict[str, str]:
    """A signature that holds: the header in any case, an old secret's v1 beside the right one,
    signed at either edge of the tolerance."""
    at = draw(st.sampled_from([TIME_UNIX, TIME_UNIX - TOLERANCE, TIME_UNIX + TOLERANCE]))
    value = signed(body, at)
    if draw(st.booleans()):
        old = hmac.new(b"whsec_old", f"{at}.{body}".encode(), hashlib.sha256).hexdigest()
        value = draw(st.sampled_from([f"{value},v1={old}", value.replace(",", f",v1={old},")]))
    name = draw(st.sampled_from(["Stripe-Signature", "stripe-signature", "STRIPE-SIGNATURE"]))
    headers = {name: value}
    if draw(st.booleans()):
        headers.update({"Content-Type": "application/json", "User-Agent": "Mock/1.0 (ü)"})
    return headers


@st.composite
def forged_headers(draw: st.DrawFn, body: str) -> tuple[dict[str, str], str]:
    """A signature that does not hold for `body`, and the refusal it gets."""
    how = draw(st.sampled_from(["wrong secret", "other body", "missing", "no t", "twice", "stale"]))
    if how == "wrong secret":
        return {"Stripe-Signature": signed(body, secret="whsec_guess")}, "invalid_signature"
    if how == "other body":
        return {"Stripe-Signature": signed(body + " ")}, "invalid_signature"
    if how == "missing":
        return {"Content-Type": "application/json"}, "invalid_signature"
    if how == "no t":
        return {"Stripe-Signature": signed(body).split(",", 1)[1]}, "invalid_signature"
    if how == "twice":  # two spellings of the header, with different values
        both = {"Stripe-Signature": signed(body), "stripe-signature": signed(body, TIME_UNIX + 1)}
        return both, "invalid_signature"
    off = draw(st.sampled_from([TOLERANCE + 1, 86_400, TIME_UNIX - 1])) * draw(
        st.sampled_from([1, -1])
    )
    return {"Stripe-Signature": signed(body, TIME_UNIX - off)}, "stale_signature"


@st.composite
def bad_mock_body(draw: st.DrawFn, ppid: str, amount: int, currency: str) -> str:
    """A body the mock provider would never send (signed all the same)."""
    data = {"provider_payment_id": ppid, "amount": amount, "currency": currency}
    good = {"id": "ntf_1", "type": "payment.succeeded", "data": data}
    text = dumps(good, ascii=True)
    how = draw(st.sampled_from(BAD_BODIES))
    if how == "not json":
        return text[:-1]
    if how == "array":
        return "[" + text + "]"
    if how == "type":
        return dumps({**good, "type": "payment.refunded"}, ascii=True)
    if how == "repeated":
        return text.replace('"data":{', '"data":{"amount":1,', 1)
    if how == "deep":
        return "[" * 100_000 + "]" * 100_000
    bad = {
        "no ppid": {"provider_payment_id": MISSING},
        "ppid": {"provider_payment_id": draw(st.sampled_from(["", "x" * 129, ppid + "\x01"]))},
        "surrogate": {"provider_payment_id": Raw('"a\\ud800"')},
        "amount": {"amount": draw(st.sampled_from([-1, "1", 1.5, JSON_SAFE_MAX + 1, None]))},
        "currency": {"currency": draw(st.sampled_from(["RUPEE", "", "I1R"]))},
    }[how]
    return dumps({**good, "data": {**data, **bad}}, ascii=True)


BAD_BODIES = ("not json", "array", "type", "repeated", "deep", "no ppid", "ppid", "surrogate",
              "amount", "currency")  # fmt: skip
PAYMENT_ACTIONS = ("webhook", "mismatch", "forged", "unconfigured", "redelivery",
                   "request again", "conflict", "webhook subject", "webhook body")  # fmt: skip
REFUND_ACTIONS = ("refund", "not admin", "wrong subject", "again", "other payment",
                  "redelivery")  # fmt: skip


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
            data["currency"] = "XTS" if payment.currency != "XTS" else "XXX"
        draft = replace(draft, data=data)
        return draft.input("valid.payment-" + action.replace(" ", "-"), 2, opened(draft))
    ppid = mock_ppid(payment.payment_id)
    status = draw(st.sampled_from(["succeeded", "failed", "cancelled"]))
    amount = payment.amount
    currency = draw(st.sampled_from([payment.currency, payment.currency.lower()]))
    if action == "webhook subject":  # verified, but keyed by another than the body names
        body = mock_body(draw, ppid, status, amount, currency)
        other = draw(st.sampled_from([ppid + "x", mock_ppid(payment.payment_id + "x"), " "]))
        draft = webhook(draw, names, other, body, {"Stripe-Signature": signed(body)})
        return draft.input("malformed.webhook-subject", 2, None)
    if action == "webhook body":  # verified, but not what the mock provider sends
        body = draw(bad_mock_body(ppid, amount, currency))
        draft = webhook(draw, names, ppid, body, {"Stripe-Signature": signed(body)})
        return draft.input("malformed.webhook-body", 2, None)
    if action == "mismatch":
        if draw(st.booleans()):
            amount = amount - 1 if amount > 1 else amount + 1
        else:
            currency = "XTS" if payment.currency != "XTS" else "XXX"
    body = mock_body(draw, ppid, status, amount, currency)
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
        body = mock_body(draw, ppid, "succeeded", 100, "INR")
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


# Malformed input: a valid event with one thing broken, dead-lettered whatever the state.

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
        body = mock_body(draw, ppid, "succeeded", 100, "INR")
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
    key: bytes | None
    value: bytes | None
    key, value, headers = draft.encode()
    if how == "subject" and kind == "payment.refund.requested":
        how = "key"  # a refund's data names no student the edge could check
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
        defect = draw(st.sampled_from(["not utf-8", "twice", "content type"]))
        if defect == "not utf-8":
            headers = [(h, b"\xff\xfe" if h == "ce_source" else v) for h, v in headers]
        elif defect == "twice":
            headers = [*headers, next(h for h in headers if h[0] == "ce_id")]
        else:
            headers = [(h, b"text/plain" if h == "content-type" else v) for h, v in headers]
    else:
        key, value, headers = draw(broken(draft, how)).encode()
    bad = Input(f"malformed.{how.replace(' ', '-')}", kind, key, value, headers,
                draw(st.sampled_from(PHASES)))  # fmt: skip
    return [bad] + [again(bad, bad.phase) for _ in range(draw(st.integers(0, 1)))]


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


Scenario = Callable[[str, int], st.SearchStrategy[list[Input]]]
# Each kind of scenario, and how many variants it goes through (its `n`: which coin event,
# amount and follow-up; which mutation of which event type; which payment action...).
PLAN: dict[str, tuple[Scenario, int]] = {
    "coin": (coin_scenario, 60),
    "funding": (funding, len(POOL)),
    "payment": (payment_scenario, 18),
    "new payment": (new_payment_scenario, 2),
    "unknown payment": (unknown_payment_scenario, 2),
    "malformed": (malformed_scenario, len(KINDS) * len(MUTATIONS)),
}


def draw_scenarios(per_variant: int, unreadable_batches: int) -> list[list[Input]]:
    """`per_variant` scenarios of every variant of every kind, drawn the same way on every
    run (so CI reproduces a failure); the first of each is Hypothesis' simplest one. Each
    unreadable batch costs a producer process: `unreadable_batches` of them."""
    drawn: list[list[Input]] = []
    for scenario, variants in PLAN.values():
        for n in range(variants):
            _draw(scenario, n, per_variant, drawn)
    for n in range(unreadable_batches):
        _draw(unreadable_scenario, n, 1, drawn)
    return drawn


def _draw(scenario: Scenario, n: int, examples: int, drawn: list[list[Input]]) -> None:
    """`examples` of `scenario`'s variant `n`, in a Hypothesis run of their own: Hypothesis
    wants the shape of what it draws to depend on its own choices only."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        drawn.append(data.draw(scenario(f"h{len(drawn)}", n)))

    collect()


def big_inputs(tag: str) -> list[Input]:
    """Values near the broker's limit: a verified 900 KB webhook for a payment of its own, a
    malformed 1 MB value, and one too large for its dead letter to keep whole."""
    student, payment_id = f"{tag}.student", f"{tag}.payment"
    data = {"payment_id": payment_id, "student_id": student, "course_id": "c", "amount": 1,
            "currency": "INR"}  # fmt: skip
    request = Draft("payment.requested", data, student, f"{tag}.e1", PLAIN)
    ppid = mock_ppid(payment_id)
    notification = {
        "id": "ntf_big",
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


# The resolver: in send order, what each input must get.


@dataclass
class _Payment:
    request: OpenPayment
    phase: int
    status: str = "initiated"


@dataclass
class _Model:
    credit_bound: dict[str, int]  # the most a student's credits could add up to
    answered: dict[EventKey, Expect] = field(default_factory=dict)
    decided: dict[tuple[str, str, str], tuple[int | None, Expect]] = field(default_factory=dict)
    payments: dict[str, _Payment] = field(default_factory=dict)
    by_ppid: dict[str, str] = field(default_factory=dict)
    refunds: dict[str, tuple[str, str, Expect]] = field(default_factory=dict)


def resolve(inputs: list[Input]) -> dict[str, str]:
    """Set every input's `expect`, in send order (phase by phase, each in order); returns the
    status each payment must end in."""
    bound: Counter[str] = Counter()
    for fact in (i.fact for i in inputs):
        if isinstance(fact, Coin) and fact.authorized and not fact.over_limit and fact.amount > 0:
            bound[fact.student] += fact.amount
    model = _Model(dict(bound))
    for phase in PHASES:
        for item in (i for i in inputs if i.phase == phase):
            item.expect = DEAD if item.fact is None else _expect(model, item.fact, phase)
    return {payment_id: p.status for payment_id, p in model.payments.items()}


def _expect(model: _Model, fact: Fact, phase: int) -> Expect:
    if fact.event in model.answered:  # a redelivery repeats its first answer
        return model.answered[fact.event]
    match fact:
        case Coin():
            expect = _coin(model, fact)
        case OpenPayment():
            expect = _open(model, fact, phase)
        case Webhook():
            expect = _webhook(model, fact, phase)
        case Refund():
            expect = _refund(model, fact)
    if not expect.dead:
        model.answered[fact.event] = expect
    return expect


def _coin(model: _Model, fact: Coin) -> Expect:
    if not fact.authorized:  # answered every time, reserves nothing
        return results(refused("coins.rejected", "not_authorized"))
    key = (fact.student, fact.ledger_type, fact.reference)
    if key in model.decided:  # its topic and key: in order
        requested, first = model.decided[key]
        if requested == fact.requested:
            return first
        return results(refused("coins.rejected", "idempotency_conflict"))
    bound = model.credit_bound.get(fact.student, 0)
    overflow = refused("coins.rejected", "limit_exceeded")
    if fact.over_limit:
        expect = results(overflow)
    elif fact.amount > 0:  # overflows only if all the student's credits together could
        expect = results(CREDITED, *([overflow] if bound > JSON_SAFE_MAX else []))
    else:  # depends on credits from other topics
        labels = [refused("coins.rejected", "insufficient_balance")]
        labels += [DEBITED] if -fact.amount <= bound else []
        labels += [overflow] if bound - fact.amount > JSON_SAFE_MAX else []
        expect = results(*labels)
    model.decided[key] = (fact.requested, expect)
    return expect


def _open(model: _Model, fact: OpenPayment, phase: int) -> Expect:
    known = model.payments.get(fact.payment_id)
    if known is None:
        model.payments[fact.payment_id] = _Payment(fact, phase)
        model.by_ppid[mock_ppid(fact.payment_id)] = fact.payment_id
        return results(SESSION)
    # Another student's request sits on another partition: in order only across phases.
    first = known.request
    assert known.phase < phase or first.student == fact.student, "the generator broke the order"
    same = (fact.student, fact.course, fact.amount, fact.currency) == (
        first.student, first.course, first.amount, first.currency)  # fmt: skip
    return results(SESSION if same else refused("payment.rejected", "idempotency_conflict"))


def _webhook(model: _Model, fact: Webhook, phase: int) -> Expect:
    if fact.signature != "valid":
        return results(refused("payment.rejected", fact.signature))
    payment_id = model.by_ppid.get(fact.ppid)
    if payment_id is None:
        return results(refused("payment.rejected", "unknown_payment"))
    payment = model.payments[payment_id]
    assert payment.phase < phase, "the generator let a webhook race its payment's request"
    if (fact.amount, fact.currency) != (payment.request.amount, payment.request.currency):
        return results(refused("payment.rejected", "amount_mismatch"))
    if fact.status != payment.status:
        if fact.status not in MOVES[payment.status]:
            return results(refused("payment.rejected", "invalid_transition"))
        payment.status = fact.status
    return results(STATUS_LABELS[fact.status])


def _refund(model: _Model, fact: Refund) -> Expect:
    payment = model.payments.get(fact.payment_id)
    if payment is not None and payment.request.student != fact.subject:
        return DEAD  # keyed by another than the payment's student: bad input
    if not fact.authorized:
        return results(refused("payment.rejected", "not_authorized"))
    if fact.refund_id in model.refunds:
        payment_id, subject, first = model.refunds[fact.refund_id]
        assert subject == fact.subject, "the generator broke the order"
        if payment_id == fact.payment_id:
            return first
        return results(refused("payment.rejected", "idempotency_conflict"))
    if payment is None:
        expect = results(refused("payment.rejected", "unknown_payment"))
    elif "refunded" in MOVES[payment.status]:
        payment.status = "refunded"
        expect = results(STATUS_LABELS["refunded"])
    else:
        expect = results(refused("payment.rejected", "invalid_transition"))
    model.refunds[fact.refund_id] = (fact.payment_id, fact.subject, expect)
    return expect


@dataclass
class Stream:
    inputs: list[Input]  # in send order
    statuses: dict[str, str]  # the status every payment must end in

    def composition(self) -> Counter[str]:
        return Counter(i.kind for i in self.inputs)


def draw_stream(per_variant: int, unreadable_batches: int) -> Stream:
    """The whole stream, in send order, every input's outcome resolved."""
    scenarios = draw_scenarios(per_variant, unreadable_batches)
    drawn = [i for scenario in scenarios for i in scenario] + big_inputs("big")
    ordered = [i for phase in PHASES for i in drawn if i.phase == phase]
    return Stream(ordered, resolve(ordered))


def labels_of(expects: Iterable[Expect]) -> tuple[Counter[Label], Counter[Label]]:
    """For each label: how many inputs must get it (their only choice), how many may."""
    must: Counter[Label] = Counter()
    may: Counter[Label] = Counter()
    for expect in expects:
        if expect.labels is None:
            continue
        if len(expect.labels) == 1:
            must.update(expect.labels)
        may.update(expect.labels)
    return must, may
