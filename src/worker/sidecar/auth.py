"""Bearer tokens of the read API (CONTRACT section 7): HS256 JWTs checked with PyJWT."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

import jwt

Role = Literal["student", "admin", "service"]
ROLES: tuple[str, ...] = get_args(Role)
ALGORITHM = "HS256"


class AuthError(Exception):
    """The token is missing, malformed, badly signed, expired or lacks a claim: 401."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: `sub` and `role` from a verified token."""

    sub: str
    role: Role

    def may_read(self, student_id: str) -> bool:
        """A student reads only their own data; admin and service read everything."""
        return self.role != "student" or self.sub == student_id


def verify_token(token: str, secret: str) -> Caller:
    """The caller a token proves; AuthError saying why not otherwise."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "role"]}
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    sub, role = claims["sub"], claims["role"]
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid token: sub must be a non-empty string")
    if role not in ROLES:
        raise AuthError(f"invalid token: role must be one of {', '.join(ROLES)}")
    return Caller(sub, role)


def mint_token(
    secret: str, sub: str, role: Role, ttl: timedelta, now: datetime | None = None
) -> str:
    """A token for `sub` in `role`, valid for `ttl`: for development and tests."""
    issued = now or datetime.now(UTC)
    claims = {"sub": sub, "role": role, "iat": issued, "exp": issued + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
