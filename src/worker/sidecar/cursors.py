"""Opaque, tamper-safe keyset cursors for the read API's lists.

A cursor names the list it belongs to (its scope: route and filters) and the position after
which the next page starts (the `seq` of the last item returned). It is base64url JSON plus an
HMAC under a key only the server knows, so a client can neither forge nor edit one, nor carry
one from one student's list to another's: anything but a cursor this list issued is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json

_MAC_BYTES = 16


class CursorError(Exception):
    """Not a cursor this list issued: the client gets 400."""


class Cursors:
    """Issues cursors under `key`; accepts those of `key` and of `previous` keys, so that the
    cursors a client holds stay valid across a rotation of the secret they derive from."""

    def __init__(self, key: bytes, *previous: bytes) -> None:
        self._key = key
        self._keys = (key, *previous)

    def encode(self, scope: str, seq: int) -> str:
        payload = json.dumps({"scope": scope, "seq": seq}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload, self._key))}"

    def decode(self, cursor: str, scope: str) -> int:
        """The position `cursor` holds, if this server issued it for `scope`."""
        payload_part, _, mac_part = cursor.partition(".")
        try:
            payload = _unb64(payload_part)
            mac = _unb64(mac_part)
        except (binascii.Error, ValueError):
            raise CursorError("malformed cursor") from None
        if not any(hmac.compare_digest(mac, self._mac(payload, key)) for key in self._keys):
            raise CursorError("cursor was not issued by this service")
        fields = json.loads(payload)
        if fields.get("scope") != scope:
            raise CursorError("cursor belongs to another list")
        seq = fields.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise CursorError("malformed cursor")
        return seq

    @staticmethod
    def _mac(payload: bytes, key: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
