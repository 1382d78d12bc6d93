"""The one retry policy for transient faults: exponential backoff with jitter."""

from __future__ import annotations

import logging
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from worker.errors import is_retriable

log = logging.getLogger(__name__)


def _log_attempt(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome else None
    log.warning(
        "retrying after transient error",
        extra={
            "action": "retry",
            "operation": getattr(state.fn, "__qualname__", None) or state.kwargs.get("what"),
            "attempt": state.attempt_number,
            "error": f"{type(error).__name__}: {error}",
            "sleep_seconds": round(state.next_action.sleep, 3) if state.next_action else None,
        },
    )


def transient_retry(*, max_seconds: float | None = None, **overrides: Any) -> AsyncRetrying:
    """Retry transient errors (see `errors.is_retriable`) with capped exponential backoff.

    With no `max_seconds` it retries until the dependency is back: a payments worker waits for
    its database rather than skipping work. Non-retriable errors are raised at once.
    """
    options: dict[str, Any] = {
        "retry": retry_if_exception(is_retriable),
        "wait": wait_random_exponential(multiplier=0.1, max=5.0),
        "stop": stop_after_delay(max_seconds) if max_seconds is not None else stop_never,
        "before_sleep": _log_attempt,
        "reraise": True,
    }
    options.update(overrides)
    return AsyncRetrying(**options)
