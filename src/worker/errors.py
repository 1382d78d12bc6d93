"""Errors that know whether trying again can help, and how long it is worth trying.

Three kinds of fault are worth another attempt:
- an **outage**: the database or the broker is unreachable, restarting or out of resources. It
  passes by itself, so the worker waits for as long as it takes.
- the **environment**: the database cannot serve the schema the worker needs until an operator
  acts (a missing table or column, a revoked privilege, the server's own errors). No record
  causes one, so the worker waits for the operator too: dead-lettering every record because
  the schema is broken would be worse than waiting. A reader gets 500, not "try again".
- **contention**: concurrency control chose this transaction as the loser (a serialization
  failure, a deadlock, a key another worker wrote first). Another attempt sees the winner's
  work and succeeds; a bounded number of attempts is enough, and one that keeps failing is
  treated as the record's own fault.

Everything else is permanent: the same input fails the same way, so the caller isolates it.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import asyncpg
from aiokafka import errors as kafka_errors

Fault = Literal["outage", "environment", "contention"]


class WorkerError(Exception):
    """Base of the worker's own errors."""

    fault: Fault | None = None


class PermanentError(WorkerError):
    """Trying again gives the same failure; stop and say why."""


class ConcurrentWriteError(WorkerError):
    """Another worker wrote the same key first; the batch is tried again and sees its row."""

    fault = "contention"


_CONTENTION_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
# The connection went away (08), the server is shutting down or starting (57P01-3), a query was
# cancelled by a statement timeout or an operator (57014), resources ran short (53: no free
# connection slot, memory, disk).
_OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014"})
_OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53"})
# A missing table or column, a revoked privilege, a missing database or role, the server's
# own errors (58: system, XX: internal).
_ENVIRONMENT_SQLSTATES = frozenset({"42P01", "42703", "42501"})
_ENVIRONMENT_SQLSTATE_CLASSES = frozenset({"3D", "28", "58", "XX"})

# How asyncpg's interface errors end when the connection or the pool went away. (Its ValueError
# kind, a value it cannot encode, quotes the value: never taken for one of these.)
_CLOSED = ("connection is closed", "pool is closing", "pool is closed")

# Broker faults aiokafka does not flag as retriable but which pass when the broker is back: a
# send that timed out in the accumulator while the broker was away, a connection that failed.
_TRANSIENT_KAFKA_ERRORS = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
)


def fault_of(exc: BaseException) -> Fault | None:
    """What kind of passing fault `exc` is; None when trying again cannot help."""
    if isinstance(exc, WorkerError):
        return exc.fault
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        if state in _CONTENTION_SQLSTATES:
            return "contention"
        if state in _OUTAGE_SQLSTATES or state[:2] in _OUTAGE_SQLSTATE_CLASSES:
            return "outage"
        if state in _ENVIRONMENT_SQLSTATES or state[:2] in _ENVIRONMENT_SQLSTATE_CLASSES:
            return "environment"
        return None
    if isinstance(exc, asyncpg.InterfaceError):
        # Only a closed connection or pool passes; the other interface errors ("another
        # operation is in progress", a value the driver cannot encode) are the program's or the
        # record's fault, and would fail the same way for ever.
        closed = str(exc).endswith(_CLOSED)
        return "outage" if closed and not isinstance(exc, ValueError) else None
    if isinstance(exc, asyncpg.exceptions.InternalClientError):
        # The driver's protocol state broke: seen when the server ends a connection under it
        # (and a migration changing a type under a prepared statement): a new connection cures.
        return "outage"
    if isinstance(exc, _TRANSIENT_KAFKA_ERRORS):
        return "outage"
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return "outage"  # the network: refused, reset, unreachable, a name not resolved
    return "outage" if getattr(exc, "retriable", False) else None  # aiokafka's errors' flag


def is_retriable(exc: BaseException) -> bool:
    """Whether another attempt may succeed (after an operator's fix, for the environment)."""
    return fault_of(exc) is not None


def passes_by_itself(exc: BaseException) -> bool:
    """Whether `exc` is a passing fault, worth a client's "try again" (503)."""
    return fault_of(exc) in ("outage", "contention")


def one_line(error: BaseException) -> str:
    """An error as an operator reads it: its class named once, then what it says."""
    name, text = type(error).__name__, str(error)
    return text if name in text else f"{name}: {text}" if text else name
