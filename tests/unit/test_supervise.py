"""The task tree: a background task that dies stops the worker, naming itself and its cause."""

from __future__ import annotations

import asyncio

import pytest

from worker.supervise import BackgroundTaskStopped, alongside, causes


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _fails() -> None:
    await asyncio.sleep(0.01)
    raise ValueError("bug in a helper")


async def _returns() -> None:
    await asyncio.sleep(0.01)


async def test_a_background_task_that_dies_cancels_main_and_the_rest_with_its_cause() -> None:
    cancelled: list[str] = []

    async def watched(name: str) -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    with pytest.raises(ExceptionGroup) as raised:
        await alongside(
            watched("main"), {"expiry-sweep": _fails, "relay": lambda: watched("relay")}
        )
    [stopped] = causes(raised.value)
    assert isinstance(stopped, BackgroundTaskStopped)
    assert str(stopped) == "expiry-sweep stopped: ValueError: bug in a helper"
    assert isinstance(stopped.__cause__, ValueError)
    assert sorted(cancelled) == ["main", "relay"]


async def test_a_background_task_that_returns_is_a_stop_too() -> None:
    with pytest.raises(ExceptionGroup) as raised:
        await alongside(_forever(), {"gateway-calls": _returns})
    [stopped] = causes(raised.value)
    assert str(stopped) == "gateway-calls stopped"
    assert stopped.__cause__ is None


async def test_main_ending_returns_its_result_and_cancels_the_background() -> None:
    background_cancelled = asyncio.Event()

    async def background() -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            background_cancelled.set()
            raise

    async def main() -> int:
        await asyncio.sleep(0.01)
        return 7

    assert await alongside(main(), {"relay": background}) == 7
    assert background_cancelled.is_set()


async def test_an_error_of_main_comes_out_as_itself_in_the_group() -> None:
    async def main() -> None:
        raise KeyError("in main")

    with pytest.raises(ExceptionGroup) as raised:
        await alongside(main(), {"relay": _forever})
    assert [type(e) for e in causes(raised.value)] == [KeyError]


async def test_nested_trees_report_the_innermost_causes() -> None:
    async def worker() -> None:
        await alongside(_forever(), {"expiry-sweep": _fails})

    with pytest.raises(ExceptionGroup) as raised:
        await alongside(worker(), {"sidecar": _forever})
    assert [str(e) for e in causes(raised.value)] == [
        "expiry-sweep stopped: ValueError: bug in a helper"
    ]
