"""`payment-worker run` as a whole, with a stand-in for the worker's parts: how it stops, with
which exit code, and what it says. (The real worker's stops are in tests/e2e and tests/faults.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import weakref
from collections.abc import Callable
from typing import Any

import pytest

from worker import app
from worker.settings import Settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def settings(port: int, grace: float = 10.0) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        SIDECAR_JWT_SECRET="a-run-test-secret-of-at-least-32-bytes",
        SIDECAR_HOST="127.0.0.1",
        PAYMENT_SERVICE_PORT=port,
        WORKER_SHUTDOWN_GRACE_SECONDS=grace,
    )


def sigterm_soon() -> None:
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGTERM)


@pytest.fixture
def worker_parts(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Replace `_work` with the coroutine function the test appends."""
    given: list[Any] = []

    async def stand_in(*args: Any) -> None:
        await given[0](*args)

    monkeypatch.setattr(app, "_work", stand_in)
    return given


async def test_a_signal_lets_the_work_finish_and_exits_0(
    worker_parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    finished = asyncio.Event()

    async def work(*args: Any) -> None:
        stop: asyncio.Event = args[-1]
        sigterm_soon()
        await stop.wait()
        finished.set()

    worker_parts.append(work)
    assert await app.run(settings(_free_port())) == 0
    assert finished.is_set()
    assert "cut short" not in caplog.text


async def test_work_that_outlives_the_grace_is_cut_and_still_exits_0(
    worker_parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def work(*args: Any) -> None:
        sigterm_soon()
        await asyncio.sleep(3600)  # a batch that never ends

    worker_parts.append(work)
    with caplog.at_level(logging.WARNING):
        assert await app.run(settings(_free_port(), grace=0.2)) == 0
    assert "WORKER_SHUTDOWN_GRACE_SECONDS: cut short" in caplog.text


async def test_a_crash_of_the_worker_exits_1_with_its_cause(
    worker_parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    async def work(*args: Any) -> None:
        raise KeyError("a bug")

    worker_parts.append(work)
    assert await app.run(settings(_free_port())) == 1
    crash = [r for r in caplog.records if getattr(r, "action", None) == "crash"]
    assert [type(r.exc_info[1]) for r in crash if r.exc_info] == [KeyError]


async def test_a_taken_sidecar_port_stops_the_worker_in_order_with_exit_1(
    worker_parts: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    closed = asyncio.Event()

    async def work(*args: Any) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            closed.set()  # the worker's parts close, as they would

    worker_parts.append(work)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert await app.run(settings(taken.getsockname()[1])) == 1
    assert closed.is_set()
    assert "sidecar stopped: OSError: the sidecar cannot listen on 127.0.0.1:" in caplog.text


def test_start_up_tunes_the_collector_for_batches() -> None:
    """What start-up left as garbage is collected, not frozen; the rest is frozen out of
    collections; and a batch's worth of live objects (a few thousand) no longer sets off young
    collections, which traversed it again and again."""
    before, frozen_before, enabled = gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()
    try:
        gc.disable()  # only the tuning's own collection may find the garbage
        start_up_garbage = weakref.ref(_a_reference_cycle())
        app._tune_the_collector()
        assert start_up_garbage() is None, "start-up garbage was frozen, not collected"
        assert gc.get_freeze_count() > frozen_before
        assert gc.get_threshold() == (app._YOUNG_COLLECTION_AFTER, *before[1:])
        gc.enable()
        young = gc.get_stats()[0]["collections"]
        batch = [{"event": n} for n in range(5_000)]
        assert gc.get_stats()[0]["collections"] == young, "a young collection ran mid-batch"
        assert len(batch) == 5_000
    finally:
        _restore_the_collector(before, frozen_before, enabled)


def test_a_higher_young_threshold_is_kept() -> None:
    before, frozen_before, enabled = gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()
    try:
        gc.set_threshold(app._YOUNG_COLLECTION_AFTER * 2, *before[1:])
        app._tune_the_collector()
        assert gc.get_threshold()[0] == app._YOUNG_COLLECTION_AFTER * 2
    finally:
        _restore_the_collector(before, frozen_before, enabled)


async def test_garbage_that_outlived_a_collection_is_collected_every_few_seconds() -> None:
    """A cycle still in use at one collection (a failed attempt's traceback while its batch is
    retried) moves to the oldest generation; once dropped, the periodic collection frees it,
    whatever the count of allocations."""
    enabled = gc.isenabled()
    collected = asyncio.Event()
    collecting: asyncio.Task[None] | None = None
    try:
        gc.disable()  # no collection by count: only the task's
        in_use = _a_reference_cycle(on_collected=collected.set)
        gc.collect(1)  # it survives, into the oldest generation
        assert any(o is in_use for o in gc.get_objects(generation=2))
        del in_use
        collecting = asyncio.create_task(app._collect_garbage(every_seconds=0.01))
        async with asyncio.timeout(10):
            await collected.wait()
    finally:
        if collecting is not None:
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting
        if enabled:
            gc.enable()


def _a_reference_cycle(on_collected: Callable[[], object] | None = None) -> object:
    """An object only a reference cycle keeps alive once the caller drops it; `on_collected` is
    called when a collection frees it."""

    class Node:
        pass

    node = Node()
    node.itself = node  # type: ignore[attr-defined]
    if on_collected is not None:
        weakref.finalize(node, on_collected)
    return node


def _restore_the_collector(
    threshold: tuple[int, int, int], frozen_before: int, enabled: bool
) -> None:
    if frozen_before == 0:
        gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()
    else:
        gc.disable()
