"""The one retry policy for transient faults: exponential backoff with jitter."""

from __future__ import annotations

import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
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
            "attempt": state.attempt_number,
            "error": f"{type(error).__name__}: {error}",
            "sleep_seconds": round(state.next_action.sleep, 3) if state.next_action else None,
        },
    )


def transient_retry() -> AsyncRetrying:
    """Retry transient errors (see `errors.is_retriable`) with capped exponential backoff.

    It retries until the dependency is back: a payments worker waits for its database or broker
    rather than skipping work. Non-retriable errors are raised at once; a stop signal cancels
    the waiting task.
    """
    return AsyncRetrying(
        retry=retry_if_exception(is_retriable),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=stop_never,
        before_sleep=_log_attempt,
        reraise=True,
    )
