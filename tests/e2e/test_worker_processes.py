"""WORKER_PROCESSES: one `payment-worker run` starting several worker processes in one group."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.events import completed, send
from tests.kafka import read_all
from tests.support import eventually
from tests.worker_process import WorkerProcess, running_worker, worker_env

PROCESSES = 2


def started(worker: WorkerProcess) -> dict[int, int]:
    """Process index -> pid, from the supervisor's log."""
    found = {}
    text = worker.log_path.read_text(errors="replace")
    for line in text[: text.rfind("\n") + 1].splitlines():  # not a line still being written
        entry = json.loads(line)
        if entry.get("action") == "process_started":
            found[entry["worker_process"]] = entry["child_pid"]
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie waiting for whoever adopted it to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def assigned_partitions(port: int) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("payment_worker_assigned_partitions")
    )


async def ready_processes(worker: WorkerProcess) -> dict[int, int]:
    """Waits until every process's sidecar is ready and holds partitions."""

    async def all_ready() -> dict[int, int]:
        assert worker.process.returncode is None, worker.log_tail()
        pids = started(worker)
        assert len(pids) == PROCESSES, worker.log_tail()
        async with httpx.AsyncClient(timeout=5) as client:
            for index in range(PROCESSES):
                try:
                    ready = await client.get(f"http://127.0.0.1:{worker.port + index}/readyz")
                except httpx.TransportError as exc:
                    raise AssertionError(f"process {index}: {exc}") from exc
                assert ready.status_code == 200, (index, ready.text)
        for index in range(PROCESSES):  # the group has formed with both
            assert await assigned_partitions(worker.port + index) > 0, index
        return pids

    return await eventually(all_ready, within=90, interval=0.3)


async def test_processes_split_the_partitions_apply_each_event_once_and_stop_on_sigterm(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_PROCESSES=str(PROCESSES))
    prefix = env["KAFKA_TOPIC_PREFIX"]
    students = [f"s-{n}" for n in range(40)]
    async with running_worker(env, tmp_path) as worker:
        pids = await ready_processes(worker)
        for student in students:
            await send(producer, prefix, "course.completed", completed(student, "c-1"), key=student)
        # Each student's event twice more: a repeat is answered, never applied again.
        for student in students:
            await send(producer, prefix, "course.completed", completed(student, "c-1"), key=student)
        results = await read_all(
            stack.kafka_bootstrap, prefix + "coins.credited", at_least=2 * len(students)
        )
        assert await worker.stop(signal.SIGTERM, within=60) == 0, worker.log_tail()
        for pid in pids.values():
            assert not running(pid)

    credited = [json.loads(r.value) for r in results if r.value is not None]
    assert sorted({c["subject"] for c in credited}) == sorted(students)
    conn = await asyncpg.connect(empty_db)
    try:
        rows = await conn.fetch(
            "SELECT student_id, count(*) AS n, sum(amount) AS coins FROM coin_transactions"
            " GROUP BY student_id"
        )
    finally:
        await conn.close()
    assert {r["student_id"]: (r["n"], r["coins"]) for r in rows} == {s: (1, 100) for s in students}
    log = [json.loads(line) for line in worker.log_path.read_text().splitlines()]
    assert [e["exit_code"] for e in log if e.get("logger") == "worker.processes"
            and e.get("action") == "stopped"] == [0]  # fmt: skip


async def test_a_process_that_dies_stops_the_others_and_the_supervisor_exits_1(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_PROCESSES=str(PROCESSES))
    async with running_worker(env, tmp_path) as worker:
        pids = await ready_processes(worker)
        os.kill(pids[1], signal.SIGKILL)
        assert await asyncio.wait_for(worker.process.wait(), 60) == 1, worker.log_tail()
        assert not running(pids[0])
    log = [json.loads(line) for line in worker.log_path.read_text().splitlines()]
    exited = [e for e in log if e.get("action") == "process_exited"]
    assert [(e["worker_process"], e["child_pid"], e["level"]) for e in exited] == [
        (1, pids[1], "ERROR")
    ]


async def test_processes_stop_when_their_supervisor_is_killed(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_PROCESSES=str(PROCESSES))
    async with running_worker(env, tmp_path) as worker:
        pids = await ready_processes(worker)
        worker.process.kill()
        await worker.process.wait()

        async def gone() -> None:
            assert not any(running(pid) for pid in pids.values()), worker.log_tail()

        try:
            await eventually(gone, within=60, interval=0.3)
        finally:  # none left consuming after a failure
            for pid in pids.values():
                if running(pid):
                    os.kill(pid, signal.SIGKILL)
    log = [json.loads(line) for line in worker.log_path.read_text().splitlines()]
    # Each stopped as on SIGTERM: cleanly, its batch finished.
    stopped = [e for e in log if e.get("action") == "stopped" and e.get("logger") == "worker.app"]
    assert [e["exit_code"] for e in stopped] == [0] * PROCESSES
