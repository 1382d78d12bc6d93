"""Admin assertions: the proof a privileged event may be required to carry (CONTRACT section 8).

When `ADMIN_ASSERTION_PUBLIC_KEYS` is set, a `coins.adjustment.requested` or
`payment.refund.requested` is honoured only if its `actor.assertion` is a JWS (ES256 or EdDSA)
made by the private half of one of those keys, whose claims repeat what it authorises:

- `sub`: the actor's id; `exp`: when the assertion stops being good (required);
- an adjustment: `adjustment_id`, `student_id` and `amount` (signed, an integer);
- a refund: `refund_id` and `payment_id`.

So a captured assertion authorises exactly one request, which idempotency lets happen once.
Expiry is judged at the time the event reached the broker (its append time when the topic
records it), not when the worker reads it, so a backlog does not turn good requests away and a
redelivery gets the same verdict.

Each key allows one algorithm, fixed by its type (P-256: ES256, Ed25519: EdDSA), never by the
token's header: an assertion cannot pick a weaker algorithm or use a public key as an HMAC
secret.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeGuard

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.types import Options

Algorithm = Literal["ES256", "EdDSA"]
# Clocks of the admin console and the broker may differ a little.
DEFAULT_LEEWAY_SECONDS = 30
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\s.*?-----END \1-----", flags=re.DOTALL)
# Members of a JWK that only a private key has.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})


class KeyFileError(ValueError):
    """A key file that cannot be used; the message says which key and why."""


@dataclass(frozen=True, slots=True)
class AssertionKey:
    algorithm: Algorithm
    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    kid: str | None = None


@dataclass(frozen=True)
class AdminAssertions:
    """The public keys admin assertions are checked with."""

    keys: Sequence[AssertionKey]
    leeway_seconds: float = DEFAULT_LEEWAY_SECONDS

    def refusal(
        self, assertion: object, actor_id: str, bound: Mapping[str, object], at: datetime
    ) -> str | None:
        """None when `assertion` proves the request; otherwise why not (for the log).

        `bound` holds the claims that must repeat the request (name: value), `at` is when the
        request reached the broker."""
        if not isinstance(assertion, str) or not assertion:
            return "no actor.assertion (a compact JWS string)"
        claims = self._verified_claims(assertion)
        if isinstance(claims, str):
            return claims
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if not _finite_number(exp):
            return "the assertion has no numeric exp"
        if at.timestamp() > exp + self.leeway_seconds:
            return f"the assertion expired at {exp} (the request reached the broker later)"
        if nbf is not None and (
            not _finite_number(nbf) or at.timestamp() < nbf - self.leeway_seconds
        ):
            return "the assertion is not valid yet (nbf)"
        for name, expected in {"sub": actor_id, **bound}.items():
            if not _same(claims.get(name), expected):
                return f"the assertion's {name!r} does not match the request"
        return None

    def _verified_claims(self, assertion: str) -> dict[str, Any] | str:
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            return f"actor.assertion is not a JWS: {exc}"
        algorithm, kid = header.get("alg"), header.get("kid")
        candidates = [
            k
            for k in self.keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]
        for candidate in candidates:
            try:
                claims: dict[str, Any] = jwt.decode(
                    assertion, candidate.key, algorithms=[candidate.algorithm], options=_OPTIONS
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                return f"the assertion cannot be read: {exc}"
            return claims
        return f"the assertion ({algorithm!s:.20}, kid {kid!s:.64}) is signed by no configured key"


# Time claims are judged here against the broker's time, not by PyJWT against the clock.
_OPTIONS: Options = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}


def _finite_number(value: object) -> TypeGuard[float]:
    """A JSON number that compares with a time: not a boolean, NaN or an infinity (Python's
    JSON reader accepts `NaN` and `Infinity`, and a NaN `exp` would never expire)."""
    if isinstance(value, bool):
        return False
    # An int is finite however large (math.isfinite would overflow on 10**400).
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


@dataclass(frozen=True, slots=True)
class Instant:
    """A bound time, as Unix seconds: a claim repeats it with any JSON number within a
    microsecond (JSON writers differ on `1796083200` against `1796083200.0`)."""

    seconds: float


def _same(found: object, expected: object) -> bool:
    """Equal and of the same JSON type: `true` is not 1, `"5"` is not 5; an `Instant` is
    repeated by any number (not a boolean) within a microsecond of it."""
    if isinstance(expected, Instant):
        try:
            return _finite_number(found) and abs(found - expected.seconds) <= 1e-6
        except OverflowError:  # an integer too large for a float is no time of an item
            return False
    return type(found) is type(expected) and found == expected


def load_keys(text: str, origin: str) -> list[AssertionKey]:
    """The public keys in a JWKS document (or one JWK) or in PEM text (one or more
    `PUBLIC KEY` blocks); KeyFileError naming `origin` when there is none or one is unusable."""
    stripped = text.strip()
    keys = _jwks(stripped, origin) if stripped.startswith("{") else _pem(stripped, origin)
    if not keys:
        raise KeyFileError(f"{origin} holds no public key")
    return keys


def _jwks(text: str, origin: str) -> list[AssertionKey]:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeyFileError(f"{origin} is not JSON: {exc}") from None
    entries = document.get("keys", [document]) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeyFileError(f"{origin}: a JWKS has a list of keys")
    keys = []
    for number, entry in enumerate(entries, 1):
        where = f"{origin}, key {number}"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where} is not a JSON object")
        if _PRIVATE_MEMBERS & entry.keys():
            raise KeyFileError(f"{where} is a private key: give the public key only")
        algorithm = _JWK_ALGORITHMS.get((entry.get("kty"), entry.get("crv")))
        if algorithm is None or entry.get("alg", algorithm) != algorithm:
            raise KeyFileError(f"{where} is neither an EC P-256 (ES256) nor an Ed25519 key")
        try:
            key = jwt.PyJWK(entry, algorithm).key
        except jwt.PyJWTError as exc:
            raise KeyFileError(f"{where} cannot be read: {exc}") from None
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise KeyFileError(f"{where}: kid must be a string")
        keys.append(AssertionKey(algorithm, key, kid))
    return keys


_JWK_ALGORITHMS: Mapping[tuple[object, object], Algorithm] = {
    ("EC", "P-256"): "ES256",
    ("OKP", "Ed25519"): "EdDSA",
}


def _pem(text: str, origin: str) -> list[AssertionKey]:
    keys = []
    for number, block in enumerate(_PEM_BLOCK.finditer(text), 1):
        where = f"{origin}, PEM block {number}"
        if block.group(1) != "PUBLIC KEY":
            raise KeyFileError(f"{where} is a {block.group(1)}: give PUBLIC KEY blocks only")
        try:
            key = load_pem_public_key(block.group(0).encode())
        except ValueError as exc:
            raise KeyFileError(f"{where} cannot be read: {exc}") from None
        if isinstance(key, ed25519.Ed25519PublicKey):
            keys.append(AssertionKey("EdDSA", key))
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            keys.append(AssertionKey("ES256", key))
        else:
            raise KeyFileError(f"{where} is neither an EC P-256 (ES256) nor an Ed25519 key")
    return keys
