"""WORKER_PROCESSES: the supervisor, with stub processes (real workers: tests/e2e)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from worker.processes import child_environment, supervise
from worker.settings import Settings


def test_each_process_runs_alone_on_its_own_port_with_the_rest_of_the_environment() -> None:
    settings = Settings(worker_processes=3, payment_service_port=9000)
    base = {"DATABASE_URL": "postgresql://db/payments", "WORKER_PROCESSES": "3", "X": "y"}
    expected = [
        {"DATABASE_URL": "postgresql://db/payments", "WORKER_PROCESSES": "1", "X": "y",
         "PAYMENT_SERVICE_PORT": port}
        for port in ("9000", "9001", "9002")
    ]  # fmt: skip
    assert [child_environment(settings, i, base) for i in range(3)] == expected
    assert base["WORKER_PROCESSES"] == "3"  # the supervisor's own is left as it was


# Stub processes: no Kafka, no database. Each writes its index to a file once its handlers are
# in place, so the tests act on what the processes did, never on how long they took.
STUB = """
import os, signal, sys, time
mode, folder = sys.argv[1], sys.argv[2]
index = int(os.environ["PAYMENT_SERVICE_PORT"]) - 9000
if mode == "deaf":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if mode == "first-exits" and index == 0:
    sys.exit(3)
open(os.path.join(folder, str(index)), "w").close()
while True:
    time.sleep(1)
"""


async def _supervised(
    tmp_path: Path, mode: str, *, signal_when_ready: bool, closing: float = 20.0
) -> tuple[int, list[str]]:
    settings = Settings(
        worker_processes=2, payment_service_port=9000, worker_shutdown_grace_seconds=0
    )
    command = (sys.executable, "-c", STUB, mode, str(tmp_path))
    running = asyncio.create_task(supervise(settings, command, closing_seconds=closing))
    if signal_when_ready:
        while len(os.listdir(tmp_path)) < 2:  # both have their handlers
            assert not running.done(), running.result()
            await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # to the supervisor, as a deployment would
    code = await asyncio.wait_for(running, 60)
    return code, sorted(os.listdir(tmp_path))


async def test_a_signal_stops_every_process_and_the_supervisor_exits_0(tmp_path: Path) -> None:
    assert await _supervised(tmp_path, "clean", signal_when_ready=True) == (0, ["0", "1"])


async def test_a_process_that_exits_unasked_stops_the_others_with_exit_1(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "worker.processes")
    code, ready = await _supervised(tmp_path, "first-exits", signal_when_ready=False)
    assert code == 1
    exited = [r for r in caplog.records if getattr(r, "action", None) == "process_exited"]
    assert [(r.worker_process, r.levelname) for r in exited] == [(0, "ERROR")]  # type: ignore[attr-defined]
    stopped = [r for r in caplog.records if getattr(r, "action", None) == "stopped"]
    [codes] = [r.codes for r in stopped]  # type: ignore[attr-defined]
    assert codes[0] == 3
    # Process 1 was stopped: by its handler once it had one (and always once it was ready),
    # else by the signal itself.
    assert codes[1] == 0 if ready == ["1"] else codes[1] in (0, -signal.SIGTERM)
    assert ready in ([], ["1"])


async def test_a_process_deaf_to_sigterm_is_killed_after_its_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "worker.processes")
    code, _ = await _supervised(tmp_path, "deaf", signal_when_ready=True, closing=0.5)
    assert code == 1
    killed = [r for r in caplog.records if getattr(r, "action", None) == "process_killed"]
    assert sorted(r.worker_process for r in killed) == [0, 1]  # type: ignore[attr-defined]
    stopped = [r for r in caplog.records if getattr(r, "action", None) == "stopped"]
    assert [r.codes for r in stopped] == [[-signal.SIGKILL, -signal.SIGKILL]]  # type: ignore[attr-defined]
