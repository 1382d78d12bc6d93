"""Errors that know whether trying again can help."""

from __future__ import annotations

import asyncio
import errno

import asyncpg
from aiokafka import errors as kafka_errors


class WorkerError(Exception):
    """Base of the worker's own errors."""

    retriable = False


class PermanentError(WorkerError):
    """Trying again gives the same failure; stop and say why."""


class ConcurrentWriteError(WorkerError):
    """Another worker wrote the same key first; the batch is tried again and sees its row."""

    retriable = True


# SQLSTATE classes and codes worth another attempt: the connection went away, the server is
# starting or shutting down, or concurrency control chose us as the loser.
_RETRIABLE_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
_RETRIABLE_SQLSTATE_CLASSES = frozenset({"08"})

# Broker faults aiokafka does not flag as retriable but which pass when the broker is back: a
# send that timed out in the accumulator while the broker was away, a connection that failed.
_TRANSIENT_KAFKA_ERRORS = (
    kafka_errors.KafkaTimeoutError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.NodeNotReadyError,
    kafka_errors.RequestTimedOutError,
)


def is_retriable(exc: BaseException) -> bool:
    """Whether `exc` is a transient fault of the database, the broker or the network."""
    if isinstance(exc, WorkerError):
        return exc.retriable
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None) or ""
        return state in _RETRIABLE_SQLSTATES or state[:2] in _RETRIABLE_SQLSTATE_CLASSES
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        # Lost or closed connections surface as interface errors.
        return True
    if isinstance(exc, _TRANSIENT_KAFKA_ERRORS):
        return True
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in {errno.ECONNREFUSED, errno.ECONNRESET, errno.EHOSTUNREACH, errno.EPIPE}
    return bool(getattr(exc, "retriable", False))  # aiokafka's errors carry the flag
