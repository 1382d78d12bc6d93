"""Helpers the tiers share: the repo's paths, free ports, waiting with a deadline."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

ROOT = Path(__file__).resolve().parent.parent
STACK = ROOT / "scripts" / "stack"

T = TypeVar("T")


def free_port(count: int = 1) -> int:
    """A free port on loopback; with `count`, the first of that many consecutive free ones."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        try:
            for other in range(port + 1, port + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", other))
        except (OSError, OverflowError):
            continue
        return port


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 30.0, interval: float = 0.1
) -> T:
    """Polls `check` until it returns without AssertionError, or re-raises the last one."""
    async for attempt in AsyncRetrying(
        stop=stop_after_delay(within),
        wait=wait_fixed(interval),
        retry=retry_if_exception_type(AssertionError),
        reraise=True,
    ):
        with attempt:
            return await check()
    raise AssertionError("unreachable")


async def waits_on_a_lock(observer: Any, waiting: Any) -> None:
    """Asserts that connection `waiting` (asyncpg) waits on a lock now, as `observer` (a
    connection or pool) sees it: poll it with `eventually` before ending what it waits for.
    (`wait_event_type` is read live, also by an observer inside a transaction.)"""
    pid = waiting.get_server_pid()
    kind = await observer.fetchval(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    assert kind == "Lock", kind
