"""The composition root's supervision: a background task that dies stops the worker."""

from __future__ import annotations

import asyncio

import pytest

from worker.app import _alongside


async def _forever() -> None:
    await asyncio.sleep(3600)


async def _fails() -> None:
    await asyncio.sleep(0.01)
    raise ValueError("bug in a helper")


async def test_a_helper_that_dies_stops_the_main_task_with_its_error() -> None:
    main_cancelled = asyncio.Event()

    async def main() -> None:
        try:
            await _forever()
        except asyncio.CancelledError:
            main_cancelled.set()
            raise

    helper = asyncio.create_task(_fails(), name="expiry-sweep")
    with pytest.raises(RuntimeError, match="expiry-sweep stopped") as raised:
        await _alongside(main(), [helper])
    assert isinstance(raised.value.__cause__, ValueError)
    assert main_cancelled.is_set()


async def test_the_main_task_ending_ends_it_and_leaves_helpers_running() -> None:
    helper = asyncio.create_task(_forever())

    async def main() -> None:
        await asyncio.sleep(0.01)

    await _alongside(main(), [helper])
    assert not helper.done()
    helper.cancel()
