"""Webhook signatures with fixed vectors (computed with `openssl dgst -sha256 -hmac`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.core.signatures import (
    SignatureError,
    WebhookVerifier,
    razorpay_signature,
    stripe_signature,
)

BODY = (
    '{"id":"ntf_1","type":"payment.succeeded","data":'
    '{"provider_payment_id":"mock_pay_1","amount":49900,"currency":"INR"}}'
)
T = 1795683600  # 2026-11-26T09:00:00Z
RECEIVED = datetime(2026, 11, 26, 9, 0, 30, tzinfo=UTC)
SECRET = "whsec_test_secret"
# printf '%s' "1795683600.$BODY" | openssl dgst -sha256 -hmac whsec_test_secret
V1 = "ffc36dc780246e39e3918f7a214378f5fc19d1d17ee6c2ab98c59723cb595262"
# the same under the secret "other"
V1_OTHER = "93a0f8d4fed9b62283b605f4736688e2929b5ffc7525393145b5c71f4992bfe1"
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac rzp_secret
RAZORPAY = "3fbb7ca967470121122670219b5fa1dd550581bbb5b9b8eed2278ae4d05d7bbd"

VERIFIER = WebhookVerifier(
    {"mock": SECRET.encode(), "stripe": SECRET.encode(), "razorpay": b"rzp_secret"}
)


def refusal(
    provider: str,
    headers: dict[str, str],
    body: str = BODY,
    *,
    verifier: WebhookVerifier = VERIFIER,
    received: datetime = RECEIVED,
) -> str:
    """The reason `verifier` refuses the webhook with (it must refuse it)."""
    with pytest.raises(SignatureError) as refused:
        verifier.verify(provider, headers, body, received)  # type: ignore[arg-type]
    return refused.value.reason


def test_the_signing_helpers_reproduce_the_fixed_vectors() -> None:
    assert stripe_signature(BODY, SECRET, T) == f"t={T},v1={V1}"
    assert razorpay_signature(BODY, "rzp_secret") == RAZORPAY


@pytest.mark.parametrize("provider", ["mock", "stripe"])
def test_a_valid_timestamped_signature_passes(provider: str) -> None:
    VERIFIER.verify(provider, {"Stripe-Signature": f"t={T},v1={V1}"}, BODY, RECEIVED)  # type: ignore[arg-type]


def test_header_names_compare_without_regard_to_case() -> None:
    VERIFIER.verify("mock", {"stripe-signature": f"t={T},v1={V1}"}, BODY, RECEIVED)
    VERIFIER.verify("razorpay", {"x-razorpay-signature": RAZORPAY}, BODY, RECEIVED)


def test_any_of_several_v1_values_may_match() -> None:
    header = f"t={T},v1={V1_OTHER},v1={V1}"
    VERIFIER.verify("stripe", {"Stripe-Signature": header}, BODY, RECEIVED)
    rolled = f"t={T},v1={V1},v0=ignored,v1={V1_OTHER}"
    VERIFIER.verify("stripe", {"Stripe-Signature": rolled}, BODY, RECEIVED)


def test_a_valid_razorpay_signature_passes() -> None:
    VERIFIER.verify("razorpay", {"X-Razorpay-Signature": RAZORPAY}, BODY, RECEIVED)


@pytest.mark.parametrize(
    ("provider", "headers"),
    [
        ("mock", {"Stripe-Signature": f"t={T},v1={V1}"}),
        ("razorpay", {"X-Razorpay-Signature": RAZORPAY}),
    ],
)
def test_a_tampered_body_is_an_invalid_signature(provider: str, headers: dict[str, str]) -> None:
    tampered = BODY.replace("49900", "49901")
    assert refusal(provider, headers, tampered) == "invalid_signature"
    # Whitespace counts: the raw body is what was signed, not its JSON meaning.
    assert refusal(provider, headers, BODY + "\n") == "invalid_signature"


def test_a_signature_under_another_secret_is_invalid() -> None:
    assert refusal("mock", {"Stripe-Signature": f"t={T},v1={V1_OTHER}"}) == "invalid_signature"
    assert refusal("razorpay", {"X-Razorpay-Signature": V1}) == "invalid_signature"


def test_a_changed_timestamp_breaks_the_signature() -> None:
    assert refusal("mock", {"Stripe-Signature": f"t={T + 1},v1={V1}"}) == "invalid_signature"


@pytest.mark.parametrize(
    "received",
    [
        datetime(2026, 11, 26, 9, 5, 1, tzinfo=UTC),  # 301 s after t: older than the tolerance
        datetime(2026, 11, 26, 8, 54, 59, tzinfo=UTC),  # 301 s before t: from the future
    ],
)
def test_a_valid_signature_outside_the_tolerance_is_stale(received: datetime) -> None:
    assert refusal("mock", {"Stripe-Signature": f"t={T},v1={V1}"}, received=received) == (
        "stale_signature"
    )


def test_the_tolerance_is_inclusive_and_configurable() -> None:
    header = {"Stripe-Signature": f"t={T},v1={V1}"}
    at_limit = datetime(2026, 11, 26, 9, 5, 0, tzinfo=UTC)
    VERIFIER.verify("mock", header, BODY, at_limit)
    strict = WebhookVerifier({"mock": SECRET.encode()}, tolerance_seconds=10)
    assert refusal("mock", header, verifier=strict) == "stale_signature"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Razorpay-Signature": RAZORPAY},
        {"Stripe-Signature": ""},
        {"Stripe-Signature": f"v1={V1}"},
        {"Stripe-Signature": f"t={T}"},
        {"Stripe-Signature": f"t=soon,v1={V1}"},
        {"Stripe-Signature": f"t={T},t={T},v1={V1}"},
        {"Stripe-Signature": f"t={T},v1=ünïcode"},
        {"Stripe-Signature": f"t={T},v1={V1}", "stripe-signature": f"t={T},v1={V1_OTHER}"},
    ],
    ids=[
        "missing", "other-provider-header", "empty", "no-t", "no-v1", "bad-t", "two-t",
        "non-ascii", "ambiguous",
    ],
)  # fmt: skip
def test_a_missing_or_malformed_stripe_header_is_an_invalid_signature(
    headers: dict[str, str],
) -> None:
    assert refusal("stripe", headers) == "invalid_signature"


def test_a_missing_razorpay_header_is_an_invalid_signature() -> None:
    assert refusal("razorpay", {"Stripe-Signature": f"t={T},v1={V1}"}) == "invalid_signature"


@pytest.mark.parametrize("provider", ["mock", "stripe", "razorpay"])
def test_a_provider_without_a_secret_refuses_every_webhook(provider: str) -> None:
    no_secrets = WebhookVerifier({"mock": None, "stripe": None, "razorpay": None})
    headers = {"Stripe-Signature": f"t={T},v1={V1}", "X-Razorpay-Signature": RAZORPAY}
    assert refusal(provider, headers, verifier=no_secrets) == "invalid_signature"


@pytest.mark.parametrize("order", [(b"other", SECRET.encode()), (SECRET.encode(), b"other")])
def test_during_a_rotation_a_signature_by_any_secret_verifies(order: tuple[bytes, ...]) -> None:
    rotating = WebhookVerifier({"stripe": order, "razorpay": (b"rzp_new", b"rzp_secret")})
    rotating.verify("stripe", {"Stripe-Signature": f"t={T},v1={V1}"}, BODY, RECEIVED)
    rotating.verify("stripe", {"Stripe-Signature": f"t={T},v1={V1_OTHER}"}, BODY, RECEIVED)
    rotating.verify("razorpay", {"X-Razorpay-Signature": RAZORPAY}, BODY, RECEIVED)
    only_new = WebhookVerifier({"stripe": (b"other",)})
    assert refusal("stripe", {"Stripe-Signature": f"t={T},v1={V1}"}, verifier=only_new) == (
        "invalid_signature"
    )
    assert refusal("mock", {"Stripe-Signature": f"t={T},v1={V1}"}, verifier=rotating) == (
        "invalid_signature"  # no secret for mock at all
    )
