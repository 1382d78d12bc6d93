"""Which faults are worth another attempt: outage, environment, contention, or permanent."""

from __future__ import annotations

import socket

import asyncpg
import pytest
from aiokafka import errors as kafka_errors
from asyncpg.exceptions import _base as asyncpg_base

from worker.errors import ConcurrentWriteError, Fault, fault_of, passes_by_itself


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
        (ConnectionRefusedError(111, "refused"), "outage"),
        (socket.gaierror(-2, "Name or service not known"), "outage"),
        (TimeoutError(), "outage"),
        (kafka_errors.KafkaConnectionError(), "outage"),
        (asyncpg.exceptions.UndefinedTableError("no such table"), "environment"),
        (asyncpg.exceptions.InsufficientPrivilegeError("denied"), "environment"),
        (asyncpg.exceptions.SerializationError("conflict"), "contention"),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock"), "contention"),
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
        (ValueError("a bug"), None),
        (kafka_errors.MessageSizeTooLargeError(), None),
    ],
)
def test_each_fault_is_sorted_by_what_another_attempt_can_do(
    error: BaseException, fault: Fault | None
) -> None:
    assert fault_of(error) == fault
    assert passes_by_itself(error) == (fault in ("outage", "contention"))
