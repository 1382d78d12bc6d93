"""Strict JSON for untrusted input: one reading of a document, or an error saying why not.

Parsers disagree about a repeated member name (most keep the last copy, some the first), so a
document that repeats one means different things to different readers: CONTRACT section 1 makes
it bad input. `NaN` and `Infinity` are not JSON numbers and are refused too.
"""

from __future__ import annotations

import json
from typing import Any


class JsonTextError(ValueError):
    """The text is not one unambiguous JSON document."""


def loads(text: str | bytes) -> Any:
    """`json.loads` that refuses repeated member names (at any depth) and non-finite numbers."""
    try:
        return json.loads(text, object_pairs_hook=_unique_members, parse_constant=_no_constant)
    except RecursionError:
        raise JsonTextError("nested too deeply") from None


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise JsonTextError(f"member name {name!r} is repeated in one object")
            seen.add(name)
    return members


def _no_constant(name: str) -> Any:
    raise JsonTextError(f"{name} is not a JSON number")
