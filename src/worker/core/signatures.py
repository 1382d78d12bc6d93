"""Webhook signatures of the payment providers (CONTRACT section 5), checked in constant time.

- `mock` and `stripe`: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, the hex being
  HMAC-SHA256 of `"<t>.<body>"` under the provider's secret; `t` must lie within the tolerance.
- `razorpay`: `X-Razorpay-Signature: <hex>`, HMAC-SHA256 of the body under the secret.

The body is the provider's raw request body; its UTF-8 bytes are what was signed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from worker.core.types import Provider

SignatureRefusal = Literal["invalid_signature", "stale_signature"]

STRIPE_HEADER = "Stripe-Signature"
RAZORPAY_HEADER = "X-Razorpay-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The webhook is not proven to come from its provider; `reason` is the CONTRACT's."""

    def __init__(self, reason: SignatureRefusal, detail: str) -> None:
        super().__init__(detail)
        self.reason: SignatureRefusal = reason


@dataclass(frozen=True)
class WebhookVerifier:
    """The providers' secrets and the tolerance. A provider may have several secrets during a
    rotation (a signature by any of them verifies); one with none (None or empty) has all its
    webhooks refused."""

    secrets: Mapping[Provider, bytes | Sequence[bytes] | None]
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS

    def _secrets(self, provider: Provider) -> tuple[bytes, ...]:
        found = self.secrets.get(provider)
        if found is None:
            return ()
        return (found,) if isinstance(found, bytes) else tuple(found)

    def verify(
        self, provider: Provider, headers: Mapping[str, str], body: str, received_at: datetime
    ) -> None:
        """Return if the signature holds; raise SignatureError saying why not otherwise.

        `received_at` is when the webhook reached the broker (the record's append time, or
        the event's `time` where the topic does not record it), so a redelivered event gets the
        same verdict however late the worker reads it.
        """
        secrets = self._secrets(provider)
        if not secrets:
            raise SignatureError("invalid_signature", f"no webhook secret is set for {provider}")
        if provider == "razorpay":
            _verify_razorpay(headers, body.encode(), secrets)
        else:
            _verify_timestamped(
                headers, body.encode(), secrets, received_at, self.tolerance_seconds
            )


def stripe_signature(body: str, secret: str, timestamp: int) -> str:
    """The `Stripe-Signature` value a provider would send: for tests, tools and the docs."""
    return (
        f"t={timestamp},v1={_hex_hmac(secret.encode(), f'{timestamp}.'.encode() + body.encode())}"
    )


def razorpay_signature(body: str, secret: str) -> str:
    """The `X-Razorpay-Signature` value a provider would send."""
    return _hex_hmac(secret.encode(), body.encode())


def _hex_hmac(secret: bytes, payload: bytes) -> str:
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def _matches(expected: list[str], candidates: list[str]) -> bool:
    """Constant-time comparison of every expected value with every candidate (all pairs are
    compared, whichever matches)."""
    matched = False
    for value in expected:
        for candidate in candidates:
            matched |= hmac.compare_digest(value.encode(), candidate.encode())
    return matched


def _header(headers: Mapping[str, str], name: str) -> str:
    values = {value for key, value in headers.items() if key.lower() == name.lower()}
    if not values:
        raise SignatureError("invalid_signature", f"no {name} header")
    if len(values) > 1:
        raise SignatureError("invalid_signature", f"{name} given more than once")
    return values.pop()


def _verify_timestamped(
    headers: Mapping[str, str],
    body: bytes,
    secrets: tuple[bytes, ...],
    received_at: datetime,
    tolerance_seconds: float,
) -> None:
    timestamps, signatures = [], []
    for item in _header(headers, STRIPE_HEADER).split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isascii() or not timestamps[0].isdigit():
        raise SignatureError("invalid_signature", f"{STRIPE_HEADER} has no single numeric t")
    if not signatures:
        raise SignatureError("invalid_signature", f"{STRIPE_HEADER} has no v1 signature")
    timestamp = timestamps[0]
    signed = f"{timestamp}.".encode() + body
    if not _matches([_hex_hmac(secret, signed) for secret in secrets], signatures):
        raise SignatureError("invalid_signature", "no v1 signature matches the body")
    age = received_at.timestamp() - int(timestamp)
    if abs(age) > tolerance_seconds:
        raise SignatureError(
            "stale_signature",
            f"signed {age:.0f} s before it was received (tolerance {tolerance_seconds:g} s)",
        )


def _verify_razorpay(headers: Mapping[str, str], body: bytes, secrets: tuple[bytes, ...]) -> None:
    expected = [_hex_hmac(secret, body) for secret in secrets]
    if not _matches(expected, [_header(headers, RAZORPAY_HEADER).strip()]):
        raise SignatureError("invalid_signature", f"{RAZORPAY_HEADER} does not match the body")
