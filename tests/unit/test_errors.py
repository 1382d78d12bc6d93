"""Which faults are worth another attempt: outage, environment, contention, or permanent."""

from __future__ import annotations

import asyncio
import socket

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import _base as asyncpg_base
from tenacity import AsyncRetrying

from worker.errors import (
    ConcurrentWriteError,
    Fault,
    PermanentError,
    WorkerError,
    fault_of,
    is_retriable,
    passes_by_itself,
)
from worker.retry import transient_retry


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (asyncpg.InterfaceError("cannot perform operation: connection is closed"), "outage"),
        (
            asyncpg.InterfaceError(
                "cannot call Transaction.rollback(): the underlying connection is closed"
            ),
            "outage",
        ),
        (asyncpg.InterfaceError("pool is closing"), "outage"),
        (asyncpg.exceptions.InternalClientError("cannot switch to state 11"), "outage"),
        (asyncpg.ConnectionDoesNotExistError("closed in the middle"), "outage"),
        (asyncpg.exceptions.AdminShutdownError("terminating"), "outage"),
        (asyncpg.exceptions.TooManyConnectionsError("too many"), "outage"),
        (asyncpg.exceptions.DiskFullError("no space"), "outage"),
        (asyncpg.exceptions.CannotConnectNowError("starting up"), "outage"),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), "outage"),
        (ConnectionRefusedError(111, "refused"), "outage"),
        (socket.gaierror(-2, "Name or service not known"), "outage"),
        (TimeoutError(), "outage"),
        (kafka_errors.KafkaConnectionError(), "outage"),
        # aiokafka flags these retriable; the relay rolls its chunk back and sends it again.
        (kafka_errors.NotLeaderForPartitionError(), "outage"),
        (kafka_errors.LeaderNotAvailableError(), "outage"),
        (kafka_errors.RequestTimedOutError(), "outage"),
        # aiokafka does not flag these, but they pass when the broker is back.
        (kafka_errors.KafkaTimeoutError(), "outage"),
        (kafka_errors.NodeNotReadyError(), "outage"),
        (asyncpg.exceptions.UndefinedTableError("no such table"), "environment"),
        (asyncpg.exceptions.InsufficientPrivilegeError("denied"), "environment"),
        (asyncpg.exceptions.UndefinedColumnError("no such column"), "environment"),
        (asyncpg.exceptions.InvalidCatalogNameError("no such database"), "environment"),
        (asyncpg.exceptions.InvalidPasswordError("wrong password"), "environment"),
        (asyncpg.exceptions.InternalServerError("internal"), "environment"),
        (asyncpg.exceptions.SerializationError("conflict"), "contention"),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), "contention"),
        (asyncpg.exceptions.LockNotAvailableError("lock timeout"), "contention"),
        (ConcurrentWriteError("first"), "contention"),
        # Permanent: retrying them would fail the same way for ever.
        (
            asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
            None,
        ),
        (
            asyncpg_base.DataError("invalid input for query argument $1: 'connection is closed'"),
            None,
        ),
        (asyncpg.exceptions.CheckViolationError("violates check"), None),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), None),
        (asyncpg.exceptions.UntranslatableCharacterError("\\u0000"), None),
        (asyncpg.exceptions.ConfigFileError("bad config"), None),
        (ValueError("a bug"), None),
        (PermanentError("the same input fails the same way"), None),
        (kafka_errors.MessageSizeTooLargeError(), None),
        (kafka_errors.CorruptRecordException(), None),
        (kafka_errors.TopicAuthorizationFailedError(), None),
        # A producer whose sequence broke, or that was fenced: a new producer, not a retry.
        (kafka_errors.OutOfOrderSequenceNumber(), None),
        (kafka_errors.ProducerFenced(), None),
        (kafka_errors.CommitFailedError(), None),
        # Stopping is never a fault to wait out.
        (asyncio.CancelledError(), None),
        (KeyboardInterrupt(), None),
    ],
)
def test_each_fault_is_sorted_by_what_another_attempt_can_do(
    error: BaseException, fault: Fault | None
) -> None:
    assert fault_of(error) == fault
    assert is_retriable(error) == (fault is not None)
    assert passes_by_itself(error) == (fault in ("outage", "contention"))


def test_a_worker_error_is_as_retriable_as_the_fault_it_names() -> None:
    class ProviderDown(WorkerError):
        fault = "outage"

    assert is_retriable(ProviderDown("try later"))
    assert not is_retriable(WorkerError("no fault named"))
    # The class decides, not the message: a permanent error that mentions an outage stays one.
    assert not is_retriable(PermanentError("connection is closed"))


async def _attempts(retrying: AsyncRetrying, failures: list[Exception]) -> int:
    """How many attempts `retrying` makes of a call that raises `failures` in turn, then
    succeeds; it raises the failure it does not try again."""
    attempts = 0
    async for attempt in retrying:
        with attempt:
            attempts += 1
            if failures:
                raise failures.pop(0)
    return attempts


async def test_a_retry_limited_to_contention_raises_any_other_fault_at_once() -> None:
    contention = [asyncpg.exceptions.DeadlockDetectedError("deadlock")] * 2
    assert await _attempts(transient_retry(faults=("contention",)), list(contention)) == 3
    for other in (
        asyncpg.exceptions.CannotConnectNowError("starting up"),  # an outage
        asyncpg.exceptions.InsufficientPrivilegeError("denied"),  # the environment
    ):
        with pytest.raises(type(other)):
            await _attempts(transient_retry(faults=("contention",)), [other])
        assert await _attempts(transient_retry(), [other]) == 2  # every fault, by default
