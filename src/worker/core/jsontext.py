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
    # What `json.loads` does before it decodes, kept to the letter.
    if isinstance(text, str):
        if text.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    else:
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    try:
        return _DECODER.decode(text)
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


# One decoder for every document: `json.loads` with hooks would build a new one per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_unique_members, parse_constant=_no_constant)
