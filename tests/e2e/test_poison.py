"""One message never stops the worker: each crash loop found so far, through the real broker.

Every test here sent the worker into a crash loop (or made it decide wrongly) before the fix:
the worker is checked to be the same process afterwards, and the rest of the stream to apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from tests.conftest import Stack
from tests.e2e.conftest import RunningWorker, StartWorker
from tests.events import STRUCTURED, adjustment, completed, redemption, referral, send, structured
from tests.kafka import read_all
from tests.raw_records import send_unreadable
from tests.support import eventually
from tests.worker_process import running_worker, worker_env

JSON_SAFE_MAX = 9_007_199_254_740_991
DLQ = "payment-worker.dlq"


async def dead_letters(w: RunningWorker, at_least: int) -> list[ConsumerRecord[bytes, bytes]]:
    return await read_all(w.bootstrap, w.prefix + DLQ, at_least=at_least)


async def answers(w: RunningWorker, kind: str, at_least: int, reference: str) -> list[dict]:  # type: ignore[type-arg]
    """The `kind` results about `reference`, once at least `at_least` of them are published."""

    async def enough() -> list[dict]:  # type: ignore[type-arg]
        found = [
            e for e in await w.results(kind, at_least=1) if e["data"]["reference_id"] == reference
        ]
        assert len(found) >= at_least, f"{len(found)} {kind} about {reference}"
        return found

    return await eventually(enough, within=30)


async def balance(url: str, student: str) -> int | None:
    conn = await asyncpg.connect(url)
    try:
        value: int | None = await conn.fetchval(
            "SELECT balance FROM coin_wallets WHERE student_id = $1", student
        )
        return value
    finally:
        await conn.close()


async def fund(w: RunningWorker, producer: AIOKafkaProducer, student: str, coins: int) -> None:
    """Credit `student` by an admin adjustment, and wait until it is applied."""
    data = adjustment("fund", student, coins)
    await send(producer, w.prefix, "coins.adjustment.requested", data, key=student)
    await answers(w, "coins.credited", 1, "fund")


def alive(w: RunningWorker, pid: int) -> None:
    assert w.worker.process.returncode is None, w.worker.log_tail()
    assert w.worker.process.pid == pid


async def poison_count(w: RunningWorker) -> float:
    text = (await w.worker.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("payment_worker_poison_messages_total{")
    )


async def test_a_record_failing_a_constraint_the_rules_missed_is_isolated_and_never_met_again(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    env = worker_env(empty_db, stack.kafka_bootstrap, WORKER_BATCH_MAX_WAIT_MS="500")
    prefix = env["KAFKA_TOPIC_PREFIX"]
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        w = RunningWorker(
            worker, prefix, env["KAFKA_CONSUMER_GROUP"], empty_db, stack.kafka_bootstrap
        )
        conn = await asyncpg.connect(empty_db)
        try:  # a rule the worker does not know, enforced by the database alone
            await conn.execute(
                "ALTER TABLE coin_transactions ADD CONSTRAINT trap CHECK (reference_id <> 'trap')"
            )
        finally:
            await conn.close()
        for course in ("c-1", "trap", "c-2", "c-3"):
            await producer.send(
                prefix + "course.completed",
                structured("course.completed", completed("ana", course)),
                key=b"ana",
                headers=STRUCTURED,
            )
        await producer.flush()
        credited = {e["data"]["reference_id"] for e in await w.results("coins.credited", 3)}
        assert credited == {"c-1", "c-2", "c-3"}
        [dead] = await dead_letters(w, 1)
        assert dict(dead.headers)["dlq.error.class"] == b"CheckViolationError"
        assert json.loads(dead.value)["data"]["course_id"] == "trap"
        assert await balance(empty_db, "ana") == 300
        assert await poison_count(w) == 1
        pid = worker.process.pid
        await send(producer, prefix, "course.completed", completed("ana", "c-4"), key="ana")
        await answers(w, "coins.credited", 1, "c-4")
        alive(w, pid)
        assert await worker.stop() == 0, worker.log_tail()
    # The offsets moved past it: a restarted worker applies what follows and meets it no more.
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        await send(producer, prefix, "course.completed", completed("ana", "c-5"), key="ana")
        await eventually(lambda: _balance_is(empty_db, "ana", 500))
        assert len(await dead_letters(w, 1)) == 1
        assert await worker.stop() == 0, worker.log_tail()


async def _balance_is(url: str, student: str, expected: int) -> None:
    assert await balance(url, student) == expected


async def test_amounts_that_would_overflow_the_ledger_are_refused_as_limit_exceeded(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker(COIN_MAX_AMOUNT=str(JSON_SAFE_MAX))
    pid = w.worker.process.pid
    # A balance at the top of the range, then any credit.
    await send(producer, w.prefix, "referral.succeeded", referral("r-1", "ana", JSON_SAFE_MAX),
               key="ana")  # fmt: skip
    await answers(w, "coins.credited", 1, "r-1")
    await send(producer, w.prefix, "course.completed", completed("ana", "c-1"), key="ana")
    [refused] = await answers(w, "coins.rejected", 1, "c-1")
    assert (refused["data"]["reason"], refused["data"]["balance"]) == (
        "limit_exceeded", JSON_SAFE_MAX
    )  # fmt: skip
    # Credit, redemption, credit: the balance fits, lifetime_earned would not.
    await send(producer, w.prefix, "referral.succeeded", referral("r-2", "bo", JSON_SAFE_MAX),
               key="bo")  # fmt: skip
    await answers(w, "coins.credited", 1, "r-2")
    await send(producer, w.prefix, "coins.redemption.requested",
               redemption("d-1", "bo", JSON_SAFE_MAX), key="bo")  # fmt: skip
    await answers(w, "coins.debited", 1, "d-1")
    await send(producer, w.prefix, "course.completed", completed("bo", "c-2"), key="bo")
    [refused] = await answers(w, "coins.rejected", 1, "c-2")
    assert refused["data"]["reason"] == "limit_exceeded"
    # Remembered like any refusal: a replay repeats it.
    await send(producer, w.prefix, "course.completed", completed("bo", "c-2"), key="bo")
    replayed = await answers(w, "coins.rejected", 2, "c-2")
    assert {e["id"] for e in replayed} == {refused["id"]}
    alive(w, pid)


async def test_a_stated_amount_above_coin_max_amount_is_refused(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    await send(producer, w.prefix, "referral.succeeded", referral("r-1", "ana", 1_000_001),
               key="ana")  # fmt: skip
    [refused] = await answers(w, "coins.rejected", 1, "r-1")
    assert refused["data"]["reason"] == "limit_exceeded"
    await send(producer, w.prefix, "referral.succeeded", referral("r-2", "ana", 1_000_000),
               key="ana")  # fmt: skip
    await answers(w, "coins.credited", 1, "r-2")
    assert await balance(w.database_url, "ana") == 1_000_000


async def test_ids_holding_a_separator_are_bad_input_and_cannot_collide(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    pid = w.worker.process.pid
    colliding = [("a", "b\x1fcourse_completion\x1fc"), ("a\x1fcourse_completion\x1fb", "c")]
    for student, course in colliding:
        await send(producer, w.prefix, "course.completed", completed(student, course), key=student)
    dead = await dead_letters(w, 2)
    assert {dict(d.headers)["dlq.error.class"] for d in dead} == {b"BadInputError"}
    await send(producer, w.prefix, "course.completed", completed("a", "c"), key="a")
    await answers(w, "coins.credited", 1, "c")
    alive(w, pid)


async def test_a_dead_letter_too_large_for_the_broker_is_truncated_and_says_so(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    pid = w.worker.process.pid
    # Just under what the broker accepts (1048588 bytes a batch); with the dlq.* headers added,
    # the copy would not be.
    garbage = b"x" * 1_048_300
    headers = [("trace", b"t" * 100), ("dlq.error.class", b"forged")]
    await producer.send_and_wait(
        w.prefix + "course.completed", garbage, key=b"ana", headers=headers
    )
    [dead] = await dead_letters(w, 1)
    found = dict(dead.headers)
    assert found["dlq.truncated"] == b"true"
    assert int(found["dlq.original.size"]) == len(garbage) + 3 + 5 + 100 + len(
        "dlq.error.classforged"
    )
    assert found["dlq.error.class"] == b"BadInputError"  # the forged one was dropped
    assert [name for name, _ in dead.headers].count("dlq.error.class") == 1
    assert dead.key == b"ana"
    assert dead.value
    assert garbage.startswith(dead.value)
    assert len(dead.value) < len(garbage)
    await send(producer, w.prefix, "course.completed", completed("ana", "c-1"), key="ana")
    await answers(w, "coins.credited", 1, "c-1")
    alive(w, pid)


async def test_repeated_member_names_and_disagreeing_subjects_are_bad_input(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    await fund(w, producer, "bob", 100)
    topic = w.prefix + "coins.redemption.requested"
    # "student_id": "alice", ..., "student_id": "bob": a last-wins parser debits bob.
    twice = structured("coins.redemption.requested", redemption("d-1", "alice", 40))
    twice = twice.replace(b'"item": "mug"}', b'"item": "mug", "student_id": "bob"}')
    assert twice.count(b'"student_id"') == 2
    await producer.send(topic, twice, key=b"alice", headers=STRUCTURED)
    # The key names another student than the subject and data.
    mine = structured("coins.redemption.requested", redemption("d-2", "bob", 40))
    await producer.send(topic, mine, key=b"alice", headers=STRUCTURED)
    # Key and subject agree, the data names another student.
    other = structured("coins.redemption.requested", redemption("d-3", "bob", 40), subject="alice")
    await producer.send(topic, other, key=b"alice", headers=STRUCTURED)
    await producer.flush()
    dead = await dead_letters(w, 3)
    assert len(dead) == 3
    messages = b" ".join(dict(d.headers)["dlq.error.message"] for d in dead)
    assert b"repeated" in messages
    assert b"is not the event's subject" in messages
    assert b"does not name" in messages
    assert await balance(w.database_url, "bob") == 100


async def test_http_methods_outside_a_fixed_set_share_one_metric_series(
    payment_worker: RunningWorker,
) -> None:
    w = payment_worker
    async with httpx.AsyncClient(base_url=w.worker.base_url, timeout=5) as client:
        for n in range(200):
            await client.request(f"X{n}", "/healthz")
        await client.request("PATCH", "/healthz")
    text = (await w.worker.get("/metrics")).text
    methods = {
        line.split('method="', 1)[1].split('"', 1)[0]
        for line in text.splitlines()
        if line.startswith("payment_worker_http_requests_total{")
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert {"other", "PATCH"} <= methods


async def test_a_request_without_the_right_reserves_nothing(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    squat = adjustment("adj-1", "ana", 30, role="student")
    await send(producer, w.prefix, "coins.adjustment.requested", squat, key="ana")
    [refused] = await answers(w, "coins.rejected", 1, "adj-1")
    assert refused["data"]["reason"] == "not_authorized"
    real = adjustment("adj-1", "ana", 30)
    await send(producer, w.prefix, "coins.adjustment.requested", real, key="ana")
    await answers(w, "coins.credited", 1, "adj-1")
    assert await balance(w.database_url, "ana") == 30


async def test_a_nul_in_a_header_name_is_dead_lettered_whole_and_the_batch_applied(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    pid = w.worker.process.pid
    topic = w.prefix + "course.completed"
    for course in ("c-1", "c-2"):
        await producer.send(
            topic, structured("course.completed", completed("ana", course)), key=b"ana",
            headers=STRUCTURED,
        )  # fmt: skip
        await producer.send(topic, b"not json", key=b"ana", headers=[("x\x00y", b"\x00")])
    await producer.flush()
    dead = await dead_letters(w, 2)
    assert all(("x\x00y", b"\x00") in d.headers for d in dead)
    await answers(w, "coins.credited", 1, "c-2")
    assert await balance(w.database_url, "ana") == 200
    alive(w, pid)


async def test_a_record_the_client_cannot_parse_is_dead_lettered_by_its_coordinates(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    pid = w.worker.process.pid
    topic = w.prefix + "course.completed"
    events = [structured("course.completed", completed("ana", c)).decode() for c in ("c-1", "c-2")]
    # One producer batch: a readable event, a record whose header name is not UTF-8, another
    # event after it (aiokafka parses the batch to reach it, so it cannot be read either).
    sent = await send_unreadable(w.bootstrap, topic, "ana", [events[0], "!garbage", events[1]])
    await send(producer, w.prefix, "course.completed", completed("ana", "c-3"), key="ana")
    await answers(w, "coins.credited", 1, "c-3")
    dead = await dead_letters(w, 2)
    assert sorted(int(dict(d.headers)["dlq.source.offset"]) for d in dead) == [
        offset for _, offset in sent[1:]
    ]
    for record in dead:
        assert dict(record.headers)["dlq.error.class"] == b"UnicodeDecodeError"
        assert (record.key, record.value) == (None, b"")
    credited = {e["data"]["reference_id"] for e in await w.results("coins.credited", 2)}
    assert credited == {"c-1", "c-3"}
    alive(w, pid)


async def test_a_redelivered_refusal_repeats_its_first_answer_byte_for_byte(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    await fund(w, producer, "ana", 100)
    await send(producer, w.prefix, "coins.redemption.requested", redemption("d-1", "ana", 10),
               key="ana")  # fmt: skip
    await answers(w, "coins.debited", 1, "d-1")
    conflicting = structured("coins.redemption.requested", redemption("d-1", "ana", 20))
    topic = w.prefix + "coins.redemption.requested"
    await producer.send_and_wait(topic, conflicting, key=b"ana", headers=STRUCTURED)
    await answers(w, "coins.rejected", 1, "d-1")
    # The balance moves (and time passes) before the same event is delivered again.
    await send(producer, w.prefix, "course.completed", completed("ana", "c-1"), key="ana")
    await answers(w, "coins.credited", 1, "c-1")
    await producer.send_and_wait(topic, conflicting, key=b"ana", headers=STRUCTURED)

    async def twice() -> list[bytes]:
        records = await read_all(w.bootstrap, w.prefix + "coins.rejected", at_least=2)
        values = [r.value for r in records if r.value]
        assert len(values) == 2
        return values

    first, again = await eventually(twice, within=30)
    assert first == again
    assert json.loads(first)["data"]["reason"] == "idempotency_conflict"


def _payload(record: ConsumerRecord[bytes, bytes]) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(record.value or b"")
    return decoded


async def test_an_unreadable_record_costs_no_record_of_any_other_partition(
    stack: Stack, empty_db: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    # aiokafka drops the records of every partition taken in the call that meets the record it
    # cannot parse (their positions moved on): they must be read again, not skipped.
    env = worker_env(empty_db, stack.kafka_bootstrap)
    prefix = env["KAFKA_TOPIC_PREFIX"]
    async with running_worker(env, tmp_path) as worker:  # creates the topics
        await worker.wait_ready()
        assert await worker.stop() == 0, worker.log_tail()
    students = [f"s{n}" for n in range(12)]
    for student in students:  # a backlog on every partition
        for course in range(5):
            await producer.send(
                prefix + "course.completed",
                structured("course.completed", completed(student, f"c{course}")),
                key=student.encode(),
                headers=STRUCTURED,
            )
    await producer.flush()
    [(partition, offset)] = await send_unreadable(
        stack.kafka_bootstrap, prefix + "course.completed", "mallory", ["!x"]
    )
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        w = RunningWorker(
            worker, prefix, env["KAFKA_CONSUMER_GROUP"], empty_db, stack.kafka_bootstrap
        )
        [dead] = await dead_letters(w, 1)
        headers = dict(dead.headers)
        assert (int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])) == (
            partition, offset,
        )  # fmt: skip
        await eventually(lambda: _every_balance_is(empty_db, students, 500), within=30)
        assert await worker.stop() == 0, worker.log_tail()


async def _every_balance_is(url: str, students: list[str], expected: int) -> None:
    for student in students:
        await _balance_is(url, student, expected)
