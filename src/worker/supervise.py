"""The worker's task tree: a main coroutine with background tasks beside it, in one TaskGroup.

Background tasks (the outbox relay, the expiry sweep, the gateway calls, the sidecar) run for
as long as the main one does. One that ends, by an error or not, is a bug or a lost dependency
the worker cannot do without: the others are cancelled and the error names the task, with its
cause, so the process stops and says why instead of running on without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")
Background = Callable[[], Coroutine[Any, Any, None]]


class BackgroundTaskStopped(RuntimeError):
    """A background task ended while the main one ran; its error, if any, is the cause."""


class _MainEnded(Exception):
    """Raised in the group's body to cancel the background tasks once the main one is done."""


async def alongside(main: Awaitable[T], background: Mapping[str, Background]) -> T:
    """Run `main` to its end with `background` (name -> coroutine function) beside it.

    When `main` ends, the background tasks are cancelled and awaited, and its result returned.
    When a background task ends first, `main` and the others are cancelled and an
    ExceptionGroup holding BackgroundTaskStopped is raised; errors of `main` come in one too.
    """
    result: T
    try:
        async with asyncio.TaskGroup() as group:
            for name, start in background.items():
                group.create_task(_for_ever(name, start), name=name)
            result = await main
            raise _MainEnded  # noqa: TRY301 - how a TaskGroup is ended on purpose
    except* _MainEnded:
        pass
    return result


async def _for_ever(name: str, start: Background) -> None:
    try:
        await start()
    except Exception as exc:
        raise BackgroundTaskStopped(f"{name} stopped: {type(exc).__name__}: {exc}") from exc
    raise BackgroundTaskStopped(f"{name} stopped")


def causes(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The errors in `group` and in the groups nested in it: what to report, one by one."""
    found: list[BaseException] = []
    for error in group.exceptions:
        found.extend(causes(error) if isinstance(error, BaseExceptionGroup) else [error])
    return found
