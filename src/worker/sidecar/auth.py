"""Bearer tokens of the read API (CONTRACT section 7): HS256 JWTs checked with PyJWT.

A token must carry `sub`, `role`, `iat` and `exp`, live no longer than the maximum lifetime,
and, when the deployment names them, carry its issuer and audience. During a secret rotation
the previous secret still verifies (it never signs). Why a token was refused goes to the log,
never to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import isfinite
from typing import Literal, get_args

import jwt

Role = Literal["student", "admin", "service"]
ROLES: tuple[str, ...] = get_args(Role)
ALGORITHM = "HS256"
DEFAULT_MAX_LIFETIME = timedelta(minutes=60)
# How far in the future a token's `iat` may lie (the issuer's clock may run ahead). Expiry is
# exact: an expired token is refused at once.
IAT_LEEWAY = timedelta(seconds=30)


class AuthError(Exception):
    """The token is missing, malformed, badly signed, expired or lacks a claim: 401. The
    message says why, for the log only."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: `sub` and `role` from a verified token."""

    sub: str
    role: Role

    def may_read(self, student_id: str) -> bool:
        """A student reads only their own data; admin and service read everything."""
        return self.role != "student" or self.sub == student_id


@dataclass(frozen=True, slots=True)
class TokenRules:
    """What a token must satisfy: signed by one of `secrets` (the first is the current one,
    the rest verify only, during a rotation), from `issuer` for `audience` when they are set,
    living at most `max_lifetime`."""

    secrets: Sequence[str]
    issuer: str | None = None
    audience: str | None = None
    max_lifetime: timedelta = DEFAULT_MAX_LIFETIME

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("at least one secret is needed")


def verify_token(token: str, rules: TokenRules) -> Caller:
    """The caller a token proves; AuthError saying why not otherwise."""
    required = ["exp", "iat", "sub", "role"]
    required += ["iss"] if rules.issuer is not None else []
    required += ["aud"] if rules.audience is not None else []
    claims = None
    for secret in rules.secrets:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=rules.issuer,
                audience=rules.audience,
                # Without an audience set, a token naming one is refused (PyJWT's default):
                # it was meant for another service.
                options={"require": required, "verify_iat": False},  # iat: below
            )
            break
        except jwt.InvalidSignatureError:
            continue  # maybe the other secret of a rotation
        except (jwt.PyJWTError, TypeError, ValueError, OverflowError) as exc:
            # PyJWT lets some odd claim values (a string `exp`, NaN) through to arithmetic.
            raise AuthError(f"invalid token: {exc}") from None
    if claims is None:
        raise AuthError("invalid token: signed by no secret of this service")
    issued, expires = claims["iat"], claims["exp"]
    for name, value in (("iat", issued), ("exp", expires)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not isfinite(value):
            raise AuthError(f"invalid token: {name} must be a finite number")
    if issued > (datetime.now(UTC) + IAT_LEEWAY).timestamp():
        raise AuthError("invalid token: issued in the future")
    if not 0 < expires - issued <= rules.max_lifetime.total_seconds():
        raise AuthError(f"invalid token: must expire after iat, within {rules.max_lifetime}")
    sub, role = claims["sub"], claims["role"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token: sub must be a non-empty string")
    if role not in ROLES:
        raise AuthError(f"invalid token: role must be one of {', '.join(ROLES)}")
    return Caller(sub, role)


def mint_token(
    secret: str,
    sub: str,
    role: Role,
    ttl: timedelta,
    now: datetime | None = None,
    *,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A token for `sub` in `role`, valid for `ttl`: for development and tests."""
    issued = now or datetime.now(UTC)
    claims: dict[str, object] = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl}
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
