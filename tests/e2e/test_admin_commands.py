"""`payment-worker dlq` and `payment-worker status` as an operator runs them: separate
processes, with the worker's own settings, against the real broker, database and a live worker."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.conftest import Stack
from tests.e2e.conftest import RunningWorker
from tests.e2e.test_poison import answers, balance, dead_letters
from tests.events import completed, send
from tests.kafka import committed_offsets
from tests.support import eventually, free_port
from tests.worker_process import running_worker, worker_env


@dataclass(frozen=True)
class Ran:
    code: int
    out: list[str]
    err: list[str]


async def command(env: dict[str, str], *args: str) -> Ran:
    """`payment-worker ARGS` in a process of its own, with `env` as its whole environment."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode().splitlines(), err.decode().splitlines())


async def execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def test_dead_letters_are_listed_shown_and_replayed_once_after_the_fix(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    prefix = env["KAFKA_TOPIC_PREFIX"]
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        group = env["KAFKA_CONSUMER_GROUP"]
        w = RunningWorker(worker, prefix, group, empty_db, stack.kafka_bootstrap)
        # A rule the worker does not know, enforced by the database alone: the bug to fix.
        await execute(
            empty_db,
            "ALTER TABLE coin_transactions ADD CONSTRAINT trap CHECK (reference_id <> 'trap')",
        )
        trap = completed("ana", "trap")
        trapped = await send(producer, prefix, "course.completed", trap, key="ana")
        bad = {"student_id": "bo", "course_id": "c-1"}  # no completed_at: fails its schema
        await send(producer, prefix, "course.completed", bad, key="bo")
        await dead_letters(w, 2)
        source = f"{prefix}course.completed:{trapped.partition}:{trapped.offset}"

        listed = await command(env, "dlq", "list")
        assert listed.code == 0, listed.err
        assert len(listed.out) == 2
        [line] = [text for text in listed.out if text.startswith(source + "\t")]
        assert "\tkey=ana\t" in line
        assert "CheckViolationError: " in line
        only = await command(env, "dlq", "list", "--error-class", "BadInputError")
        assert [text.split("\t")[1] for text in only.out] == ["key=bo"]
        assert (await command(env, "dlq", "list", "--topic", "referral.succeeded")).out == []
        later = await command(env, "dlq", "list", "--since", "2999-01-01T00:00:00Z")
        assert later.out == []

        shown = await command(env, "dlq", "show", source)
        assert shown.code == 0, shown.err
        assert f"source      {source}" in shown.out
        assert "key         ana" in shown.out
        assert json.loads(shown.out[-1])["data"]["course_id"] == "trap"
        missing = await command(env, "dlq", "show", f"{prefix}course.completed:0:999999")
        assert (missing.code, missing.out) == (1, [])
        assert missing.err[-1].startswith("payment-worker dlq show: no dead letter of ")

        ends_before = await _ends(stack, prefix)
        dry = await command(
            env, "dlq", "replay", "--error-class", "CheckViolationError", "--dry-run"
        )
        assert dry.code == 0, dry.err
        assert dry.out == [f"would replay {source}"]
        assert await _ends(stack, prefix) == ends_before  # nothing sent

        await execute(empty_db, "ALTER TABLE coin_transactions DROP CONSTRAINT trap")  # the fix
        for _ in range(2):  # a second replay is recognized by the event id, and changes nothing
            replayed = await command(env, "dlq", "replay", "--error-class", "CheckViolationError")
            assert replayed.code == 0, replayed.err
            assert replayed.out == [f"replayed {source}"]
        await answers(w, "coins.credited", 1, "trap")
        # A later event of the same student, on the same partition: once it is applied, both
        # replays before it have been met.
        await send(producer, prefix, "course.completed", completed("ana", "c-2"), key="ana")
        await answers(w, "coins.credited", 1, "c-2")
        assert await balance(empty_db, "ana") == 200
        # Each replay is answered; the second repeats the first answer, the same event.
        results = await w.results("coins.credited", 3)
        answered = [e for e in results if e["data"]["reference_id"] == "trap"]
        assert len(answered) == 2
        assert answered[0] == answered[1]
        checked = await command(env, "ledger", "check")
        assert checked.code == 0, checked.out
        assert await worker.stop() == 0, worker.log_tail()


async def _ends(stack: Stack, prefix: str) -> dict[int, int]:
    """The end offset of each partition of the course topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(prefix + "course.completed", p) for p in range(3)]
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def test_status_shows_the_group_its_partitions_lag_and_backlog(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    prefix, group = env["KAFKA_TOPIC_PREFIX"], env["KAFKA_CONSUMER_GROUP"]
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        w = RunningWorker(worker, prefix, group, empty_db, stack.kafka_bootstrap)
        await send(producer, prefix, "course.completed", completed("ana", "c-1"), key="ana")
        await answers(w, "coins.credited", 1, "c-1")

        async def settled() -> Ran:
            ran = await command(env, "status")
            assert ran.code == 0, ran.err
            assert f"group {group}: Stable, 1 member" in ran.out
            assert (
                ran.out[_index(ran.out, "lag: ")] == "lag: 0 messages behind the committed offsets"
            )
            return ran

        shown = await eventually(settled, within=30)
        assert re.fullmatch(r"  payment-worker-\S+  /127\.0\.0\.1", shown.out[1])
        assert shown.out[2] == "    partitions 0-2 of 8 topics"
        assert "outbox: 0 queued, oldest 0.0 s; parked: 0" in shown.out
        assert f"dead letters: 0 in {prefix}payment-worker.dlq" in shown.out
        assert await worker.stop() == 0, worker.log_tail()

    # The worker gone, three events wait: the group is empty and three messages behind.
    for course in ("c-2", "c-3", "c-4"):
        await send(producer, prefix, "course.completed", completed("ana", course), key="ana")
    committed = await committed_offsets(stack.kafka_bootstrap, group, prefix + "course.completed")
    ran = await command(env, "status")
    assert ran.code == 0, ran.err
    assert ran.out[0] == f"group {group}: Empty, 0 members"
    assert "lag: 3 messages behind the committed offsets" in ran.out
    [row] = [text for text in ran.out if text.startswith(f"  {prefix}course.completed ")]
    partition = next(p for p in committed if committed[p] > 0)
    assert row.split()[1:] == ["3", str(sum(committed.values()) + 3), "3", f"p{partition}:", "3"]


def _index(lines: list[str], start: str) -> int:
    return next(n for n, text in enumerate(lines) if text.startswith(start))


async def test_an_unreachable_dependency_is_one_line_and_exit_1(
    stack: Stack, empty_db: str
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap)
    nowhere = {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    for args in (
        ("dlq", "list"),
        ("dlq", "replay", "--dry-run"),
        ("dlq", "show", "course.completed:0:1"),
    ):
        ran = await command(nowhere, *args)
        assert (ran.code, ran.out) == (1, []), args
        [line] = ran.err
        assert line.startswith(f"payment-worker dlq {args[1]}: the broker at 127.0.0.1:"), line

    no_database = {**env, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    ran = await command(no_database, "status")
    assert ran.code == 1
    [line] = ran.err
    assert line.startswith("error: database failed: ")
    assert ran.out[-1].startswith("dead letters: ")  # what the broker said is still shown

    ran = await command(env, "dlq", "list")
    assert ran.code == 1
    assert ran.err == [
        f"payment-worker dlq list: there is no topic {env['KAFKA_TOPIC_PREFIX']}payment-worker.dlq:"
        " no worker has started on this cluster with this KAFKA_TOPIC_PREFIX (or this principal"
        " may not describe it)"
    ]
