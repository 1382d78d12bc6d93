"""Field types the CONTRACT fixes for every event: ids, amounts, currencies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints

from worker.core import money

JSON_SAFE_MAX = 9_007_199_254_740_991

# PostgreSQL text cannot hold NUL, so stored strings refuse it at the edge (bad input).
NO_NUL = r"^[^\x00]*$"
# Ids and CloudEvents attributes refuse every control character (CONTRACT section 2): they are
# keys, log fields and parts of derived ids, where an invisible separator only causes harm.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=NO_CONTROL)]
Text = Annotated[str, StringConstraints(max_length=1000, pattern=NO_NUL)]
Attribute = Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=NO_CONTROL)]
# Amounts are integers in the JSON-safe range; strict, so "12" and 12.0 are refused.
Amount = Annotated[int, Field(strict=True, ge=-JSON_SAFE_MAX, le=JSON_SAFE_MAX)]
PositiveAmount = Annotated[int, Field(strict=True, ge=1, le=JSON_SAFE_MAX)]
NonNegativeAmount = Annotated[int, Field(strict=True, ge=0, le=JSON_SAFE_MAX)]


# An ISO 4217 code; accepted in any case (Stripe writes "inr") and kept in upper case. A code
# that is not an active ISO 4217 currency is bad input (CONTRACT section 2).
def _iso_currency(code: str) -> str:
    code = code.upper()
    if not money.is_iso_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code")
    return code


Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{3}$"), AfterValidator(_iso_currency)
]
# The payment providers whose webhooks the worker verifies (CONTRACT section 5).
Provider = Literal["mock", "stripe", "razorpay"]


def _utf8(text: str) -> str:
    text.encode("utf-8")  # a lone surrogate (JSON "\ud800") raises: no HTTP body can hold one
    return text


# Text that is exactly encodable as UTF-8: what a provider signed, bytes for bytes.
Utf8 = Annotated[str, AfterValidator(_utf8)]
