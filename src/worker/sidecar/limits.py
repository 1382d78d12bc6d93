"""A token bucket per token subject: the read API's rate limit (SIDECAR_RATE_LIMIT_PER_MINUTE).

Each subject may make `per_minute` requests a minute on average, and up to `per_minute` at once
after a quiet minute. The buckets live in the process: with N workers behind a balancer a
subject gets up to N times the rate. Subjects come only from verified tokens, and the table
forgets its least recently seen half when it grows past `max_subjects`, so it stays bounded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# Requests per minute per token subject unless SIDECAR_RATE_LIMIT_PER_MINUTE says otherwise.
DEFAULT_PER_MINUTE = 600


class RateLimiter:
    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_subjects: int = 10_000,
    ) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._clock = clock
        self._max_subjects = max_subjects
        self._buckets: dict[str, tuple[float, float]] = {}  # subject -> (tokens, as of when)

    def take(self, subject: str) -> float:
        """Spend one request of `subject`'s: 0 when allowed, else the seconds until it would
        be (for `Retry-After`)."""
        now = self._clock()
        tokens, then = self._buckets.get(subject, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - then) * self._per_second)
        # Re-inserted, so the table runs from the least recently seen subject to the most.
        self._buckets.pop(subject, None)
        if tokens >= 1:
            self._buckets[subject] = (tokens - 1, now)
            self._bound()
            return 0.0
        self._buckets[subject] = (tokens, now)
        return (1 - tokens) / self._per_second

    def _bound(self) -> None:
        """Past `max_subjects`, forget the least recently seen half: a bucket that has not been
        used for a while is (nearly) full, and a forgotten one starts full, so this costs at
        most a burst to a subject that was quiet. Amortised O(1) a request."""
        if len(self._buckets) <= self._max_subjects:
            return
        for subject in list(self._buckets)[: len(self._buckets) // 2]:
            del self._buckets[subject]
