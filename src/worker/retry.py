"""The one retry policy for transient faults: exponential backoff with jitter."""

from __future__ import annotations

import logging
from collections.abc import Collection
from functools import partial
from typing import get_args

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_never,
    wait_random_exponential,
)

from worker.core.gateway import GatewayUnavailable
from worker.errors import Fault, fault_of

log = logging.getLogger(__name__)


def _log_attempt(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome else None
    waiting_for_operator = error is not None and fault_of(error) == "environment"
    log.log(
        logging.ERROR if waiting_for_operator else logging.WARNING,
        "retrying: the database needs an operator" if waiting_for_operator else "retrying",
        extra={
            "action": "retry",
            "attempt": state.attempt_number,
            "error": f"{type(error).__name__}: {error}",
            "sleep_seconds": round(state.next_action.sleep, 3) if state.next_action else None,
        },
    )


# Contention passes within a few attempts; a conflict that outlives these is the input's own
# fault, and the caller isolates it (`errors` explains the kinds).
CONTENTION_ATTEMPTS = 8


def _worth_another_attempt(faults: Collection[Fault], state: RetryCallState) -> bool:
    error = state.outcome.exception() if state.outcome else None
    if error is None:
        return False
    fault = fault_of(error)
    if fault is None or fault not in faults:
        return False
    if fault == "contention":
        return state.attempt_number < CONTENTION_ATTEMPTS
    return True


def transient_retry(faults: Collection[Fault] = get_args(Fault)) -> AsyncRetrying:
    """Retry passing faults (see `worker.errors`) with capped exponential backoff.

    An outage, or a fault of the environment, is waited out for as long as it lasts: a payments
    worker waits for its database or broker rather than skipping work. Contention is tried
    `CONTENTION_ATTEMPTS` times. Other errors, and faults not in `faults`, are raised at once;
    a stop signal cancels the waiting task.
    """
    return AsyncRetrying(
        retry=partial(_worth_another_attempt, faults),
        wait=wait_random_exponential(multiplier=0.1, max=5.0),
        stop=stop_never,
        before_sleep=_log_attempt,
        reraise=True,
    )


# A provider call is tried this often in a row; after that (or when the provider asks for a
# longer pause than GATEWAY_MAX_WAIT) the call is put off in the database and tried later.
GATEWAY_ATTEMPTS = 3
GATEWAY_MAX_WAIT = 10.0
_gateway_backoff = wait_random_exponential(multiplier=0.5, max=GATEWAY_MAX_WAIT)


def _provider_wait(state: RetryCallState) -> float:
    """The pause the provider asked for (`Retry-After`), else exponential backoff."""
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, GatewayUnavailable) and error.retry_after is not None:
        return error.retry_after
    return _gateway_backoff(state)


def _enough_for_now(state: RetryCallState) -> bool:
    """Stop after GATEWAY_ATTEMPTS, or at once when the provider asks for a long pause."""
    error = state.outcome.exception() if state.outcome else None
    long_pause = (
        isinstance(error, GatewayUnavailable) and (error.retry_after or 0) > GATEWAY_MAX_WAIT
    )
    return state.attempt_number >= GATEWAY_ATTEMPTS or long_pause


def gateway_retry() -> AsyncRetrying:
    """Retry a provider call only on what the provider marks as passing (`GatewayUnavailable`:
    no answer in time, a 5xx, a 429), honouring its `Retry-After`. A refusal is final at once."""
    return AsyncRetrying(
        retry=retry_if_exception_type(GatewayUnavailable),
        wait=_provider_wait,
        stop=_enough_for_now,
        before_sleep=_log_attempt,
        reraise=True,
    )
