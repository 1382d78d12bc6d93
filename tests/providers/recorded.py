"""What a provider test server saw: each request as it arrived, kept in a thread-safe list."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload
from urllib.parse import parse_qs


class Headers(Mapping[str, str]):
    """HTTP headers looked up without regard to case; a repeated header's values are joined
    with ", " (RFC 9110 section 5.3), keeping the spelling of its first appearance."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            key = name.lower()
            if key in self._items:
                first, before = self._items[key]
                self._items[key] = (first, f"{before}, {value}")
            else:
                self._items[key] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self._items.values())!r})"


@dataclass(frozen=True, eq=False)
class Recorded:
    """One request: `query` maps each parameter to its values in order; `body` is raw;
    `target` is the request-target as sent (path and query, still encoded)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    target: str = ""

    def json(self) -> Any:
        """The body parsed as JSON (Razorpay's requests)."""
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        """The body parsed as a form (Stripe's requests: `metadata[payment_id]` and so on)."""
        return parse_qs(self.body.decode(), keep_blank_values=True)


class RecordedRequests(Sequence[Recorded]):
    """The requests a server received, in arrival order; safe to read while it serves."""

    def __init__(self) -> None:
        self._items: list[Recorded] = []
        self._changed = threading.Condition()

    def append(self, request: Recorded) -> None:
        with self._changed:
            self._items.append(request)
            self._changed.notify_all()

    @overload
    def __getitem__(self, index: int) -> Recorded: ...
    @overload
    def __getitem__(self, index: slice) -> list[Recorded]: ...
    def __getitem__(self, index: int | slice) -> Recorded | list[Recorded]:
        with self._changed:
            return self._items[index]

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.snapshot())

    def snapshot(self) -> list[Recorded]:
        with self._changed:
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def matching(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        """The requests with this method and path (either may be left out)."""
        return [
            r
            for r in self.snapshot()
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        """Blocks until at least `count` requests have arrived; AssertionError after `timeout`."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                raise AssertionError(
                    f"{len(self._items)} request(s) arrived within {timeout} s, not {count}"
                )
            return list(self._items)
