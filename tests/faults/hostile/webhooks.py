"""Webhooks: the mock provider's notifications, signed, forged, stale or not what it sends."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import strategies as st

from tests.events import TIME_UNIX
from tests.faults.hostile.envelope import MISSING, Draft, Raw, dumps, styles
from tests.faults.hostile.model import JSON_SAFE_MAX, TOLERANCE, WEBHOOK_SECRET
from tests.faults.hostile.values import Names, ids, texts
from worker.core.signatures import stripe_signature


def mock_body(
    draw: st.DrawFn, names: Names, ppid: str, status: str, amount: int, currency: str
) -> str:
    """The mock provider's notification (CONTRACT section 5). Its id is unique, as a provider's
    are: the worker takes a notification id it has applied again for the provider's retry."""
    body = {
        "id": f"{names('ntf')}{draw(st.integers(0, 10**9))}",
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
