"""Hostile stream: a Hypothesis-drawn mix of valid, extreme and malformed input, one worker.

Through the real broker and database: every input gets exactly one outcome (a result, or a copy
on the dead-letter topic naming it by its coordinates), the worker is the same process at the
end, and the ledger's invariants hold. `tests/faults/hostile/` draws the stream and works out
what each input must get. FAULTS_SCALE=5 (the longer mode) draws five times as much.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeAlias

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from tests.conftest import Stack
from tests.faults.hostile import (
    COIN_MAX,
    JSON_SAFE_MAX,
    PHASES,
    PROVOKED,
    WEBHOOK_SECRET,
    Input,
    Label,
    Stream,
    draw_stream,
    labels_of,
)
from tests.faults.stream import SCALE, assert_lots, results_by_topic
from tests.kafka import keep_producer_time
from tests.raw_records import send_unreadable
from tests.support import eventually
from tests.worker_process import WorkerProcess, running_worker, worker_env
from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS

# Scenarios of each variant (CI: about 1500 inputs); each unreadable batch starts a process.
PER_VARIANT = 3 * SCALE
UNREADABLE_BATCHES = 2 * SCALE
Coordinates = tuple[str, int, int]  # event type (the topic less its prefix), partition, offset
Record: TypeAlias = "ConsumerRecord[bytes, bytes]"


async def test_every_input_of_a_hostile_stream_gets_one_outcome_from_the_same_worker(
    stack: Stack, db_url: str, tmp_path: Path, producer: AIOKafkaProducer
) -> None:
    started = time.monotonic()
    stream = draw_stream(PER_VARIANT, UNREADABLE_BATCHES)
    env = worker_env(
        db_url,
        stack.kafka_bootstrap,
        PAYMENT_WEBHOOK_SECRET_MOCK=WEBHOOK_SECRET,
        COIN_MAX_AMOUNT=str(COIN_MAX),
        COIN_EXPIRY_DAYS="30",  # every credit a lot, every debit drawing on lots
    )
    prefix = env["KAFKA_TOPIC_PREFIX"]
    await keep_producer_time(stack.kafka_bootstrap, env)
    sent: dict[Coordinates, Input] = {}
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()
        pid = worker.process.pid
        async with watching(stack.kafka_bootstrap, prefix, env["KAFKA_CONSUMER_GROUP"]) as watch:
            for phase in PHASES:  # each phase once the worker has answered the one before
                inputs = [i for i in stream.inputs if i.phase == phase]
                sent |= await send(producer, stack.kafka_bootstrap, prefix, inputs)
                done = partial(settled, watch, worker, db_url, outcomes=len(sent))
                await eventually(done, within=180)
        metrics = (await worker.get("/metrics")).text
        assert (worker.process.pid, worker.process.returncode) == (pid, None), worker.log_tail()
        assert await worker.stop() == 0, worker.log_tail()
    records = await results_by_topic(stack.kafka_bootstrap, prefix, (*OUTPUT_TOPICS, DLQ_TOPIC))
    dead = check_dead_letters(records.pop(DLQ_TOPIC), sent, prefix)
    published = check_results(records, stream)
    await check_database(db_url, stream, records)
    check_metrics(metrics, sent, dead)
    check_log(worker.log_path)
    print(
        f"\nhostile stream: {len(sent)} inputs, {published} results, {dead} dead letters"
        f" in {time.monotonic() - started:.0f} s; {dict(stream.composition().most_common())}"
    )


# Sending, and waiting until the worker has answered.


async def send(
    producer: AIOKafkaProducer, bootstrap: str, prefix: str, inputs: list[Input]
) -> dict[Coordinates, Input]:
    """Send `inputs` in order; where each one landed."""
    landed: dict[Coordinates, Input] = {}
    deliveries = []
    for item in inputs:
        if item.unreadable_batch is None:
            delivery = await producer.send(
                prefix + item.topic, item.value, key=item.key, headers=item.headers
            )
            deliveries.append((item, delivery))
            continue
        batch = [i for i in inputs if i.unreadable_batch == item.unreadable_batch]
        if item is batch[0]:  # the whole batch, by a producer of its own
            assert item.key is not None
            values = [(i.value or b"").decode() for i in batch]
            at = await send_unreadable(bootstrap, prefix + item.topic, item.key.decode(), values)
            landed |= {(i.topic, *where): i for i, where in zip(batch, at, strict=True)}
    for item, delivery in deliveries:
        metadata = await delivery
        landed[(item.topic, metadata.partition, metadata.offset)] = item
    return landed


@dataclass
class Watch:
    consumer: AIOKafkaConsumer  # no group: reads offsets only
    admin: AIOKafkaAdminClient
    prefix: str
    group: str
    inputs: list[TopicPartition]
    outcomes: list[TopicPartition]


@asynccontextmanager
async def watching(bootstrap: str, prefix: str, group: str) -> AsyncIterator[Watch]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        await consumer._client.force_metadata_update()

        def partitions(topics: tuple[str, ...]) -> list[TopicPartition]:
            found = [
                TopicPartition(prefix + topic, p)
                for topic in topics
                for p in consumer.partitions_for_topic(prefix + topic) or ()
            ]
            assert {tp.topic for tp in found} == {prefix + t for t in topics}, "topics missing"
            return found

        yield Watch(
            consumer,
            admin,
            prefix,
            group,
            partitions(INPUT_TOPICS),
            partitions((*OUTPUT_TOPICS, DLQ_TOPIC)),
        )
    finally:
        await admin.close()
        await consumer.stop()


async def settled(watch: Watch, worker: WorkerProcess, db_url: str, *, outcomes: int) -> None:
    """Every input consumed and committed, and at least `outcomes` published with none queued:
    no more can come."""
    if worker.process.returncode is not None:
        pytest.fail(f"the worker stopped:\n{worker.log_tail()}")
    conn = await asyncpg.connect(db_url)
    try:
        parked = await conn.fetch("SELECT topic, error_class, error_message FROM parked_messages")
        queued = await conn.fetchval("SELECT count(*) FROM outbox")
    finally:
        await conn.close()
    if parked:  # never published: waiting cannot help
        pytest.fail(f"{len(parked)} messages parked, e.g. {[dict(r) for r in parked[:3]]}")
    ends = await watch.consumer.end_offsets(watch.inputs)
    committed = {
        tp: meta.offset
        for tp, meta in (await watch.admin.list_consumer_group_offsets(watch.group)).items()
    }
    behind = {f"{tp.topic}-{tp.partition}": end - committed.get(tp, 0)
              for tp, end in ends.items() if committed.get(tp, 0) != end}  # fmt: skip
    assert not behind, f"not consumed yet: {behind}"
    assert queued == 0, f"{queued} outcomes still queued in the outbox"
    published = sum((await watch.consumer.end_offsets(watch.outcomes)).values())
    assert published >= outcomes, f"{published} outcomes published for {outcomes} inputs"


# What came out.


def check_dead_letters(dead: list[Record], sent: dict[Coordinates, Input], prefix: str) -> int:
    """The dead letters name exactly the inputs that must be dead-lettered, once each."""
    found: Counter[Coordinates] = Counter()
    for record in dead:
        source = {}
        for name in ("dlq.source.topic", "dlq.source.partition", "dlq.source.offset"):
            values = [v for n, v in record.headers if n.lower() == name]
            assert len(values) == 1, f"{name} given {len(values)} times: {record.headers}"
            source[name] = (values[0] or b"").decode()
        where = (
            source["dlq.source.topic"].removeprefix(prefix),
            int(source["dlq.source.partition"]),
            int(source["dlq.source.offset"]),
        )
        found[where] += 1
        item = sent.get(where)
        if item is None or not item.expect.dead:
            continue  # reported below, with the rest
        headers = dict(record.headers)
        if headers.get("dlq.truncated") != b"true":
            assert (record.key, record.value) == (item.key, item.value), item.kind
            kept = [(n, v) for n, v in item.headers if not n.lower().startswith("dlq.")]
            assert list(record.headers[: len(kept)]) == kept, item.kind
        elif item.unreadable_batch is None:  # too large to copy whole: the head of it
            assert item.value is not None
            assert record.value, item.kind
            assert item.value.startswith(record.value), item.kind
            assert int(headers["dlq.original.size"]) >= len(item.value)
        else:  # unreadable: nothing of it can be copied
            assert (record.key, record.value or None) == (None, None)
    twice = {where: n for where, n in found.items() if n > 1}
    assert not twice, f"dead-lettered more than once: {twice}"
    must = {where for where, item in sent.items() if item.expect.dead}
    wrongly = [
        (sent[w].kind if w in sent else "not sent", w, _error(dead, w, prefix))
        for w in sorted(set(found) - must)
    ]
    assert not wrongly, f"{len(wrongly)} dead letters for inputs owed a result: {wrongly[:10]}"
    missed = [(sent[w].kind, w) for w in sorted(must - set(found))]
    assert not missed, f"{len(missed)} bad inputs never dead-lettered: {missed[:10]}"
    truncated = [_where(r, prefix) for r in dead if dict(r.headers).get("dlq.truncated") == b"true"]
    assert "malformed.too-big-to-copy" in {sent[w].kind for w in truncated}
    return len(dead)


def _where(record: Record, prefix: str) -> Coordinates:
    headers = dict(record.headers)
    return (
        headers["dlq.source.topic"].decode().removeprefix(prefix),
        int(headers["dlq.source.partition"]),
        int(headers["dlq.source.offset"]),
    )


def _error(dead: list[Record], where: Coordinates, prefix: str) -> str:
    for record in dead:
        if _where(record, prefix) == where:
            message: bytes = dict(record.headers)["dlq.error.message"]
            return message.decode(errors="replace")[:300]
    return ""


def check_results(records: dict[str, list[Record]], stream: Stream) -> int:
    """One result per input owed one, each of a kind that input may get."""
    owed = [i for i in stream.inputs if not i.expect.dead]
    got: Counter[Label] = Counter()
    event_ids = {i.fact.event[1] for i in owed if i.fact is not None}
    for topic, found in records.items():
        for record in found:
            event = json.loads(record.value)
            assert (event["type"], event["source"]) == (topic, "payment-worker")
            assert record.key == event["subject"].encode(), "a result is keyed by its subject"
            data = event["data"]
            got[(topic, data["reason"] if topic.endswith(".rejected") else None)] += 1
            if "source_event_id" in data:
                assert data["source_event_id"] in event_ids, f"answers no input: {event}"
    total = sum(got.values())
    assert total == len(owed), f"{total} results for {len(owed)} inputs owed one: {got}"
    must, may = labels_of(i.expect for i in owed)
    wrong = {
        label: (must[label], got[label], may[label])
        for label in {*got, *must}
        if not must[label] <= got[label] <= may[label]
    }
    assert not wrong, f"results outside what the inputs allow (least, got, most): {wrong}"
    assert set(got) >= PROVOKED, f"never provoked: {sorted(PROVOKED - set(got), key=str)}"
    return total


async def check_database(db_url: str, stream: Stream, records: dict[str, list[Record]]) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
        assert await conn.fetchval("SELECT count(*) FROM parked_messages") == 0
        wallets = await conn.fetch(
            "SELECT w.student_id, w.balance, w.lifetime_earned, w.lifetime_spent,"
            " coalesce(sum(t.amount), 0) AS entries"
            " FROM coin_wallets w LEFT JOIN coin_transactions t USING (student_id)"
            " GROUP BY w.student_id"
        )
        doubled = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM coin_transactions"
            " GROUP BY student_id, type, reference_id HAVING count(*) > 1) AS d"
        )
        drift = await conn.fetchval(
            "SELECT count(*) FROM (SELECT balance_after, sum(amount) OVER"
            " (PARTITION BY student_id ORDER BY seq) AS running FROM coin_transactions) AS e"
            " WHERE balance_after <> running"
        )
        rows = await conn.fetch("SELECT transaction_id FROM coin_transactions")
        entries = {str(row["transaction_id"]) for row in rows}
        rows = await conn.fetch("SELECT payment_id, status FROM payments")
        statuses = {row["payment_id"]: row["status"] for row in rows}
        await assert_lots(conn)
    finally:
        await conn.close()
    for w in wallets:
        assert w["balance"] == w["entries"], f"balance is not the sum of its entries: {dict(w)}"
        assert w["balance"] == w["lifetime_earned"] - w["lifetime_spent"], dict(w)
        assert 0 <= w["balance"] <= w["lifetime_earned"] <= JSON_SAFE_MAX, dict(w)
        assert 0 <= w["lifetime_spent"] <= JSON_SAFE_MAX, dict(w)
    assert doubled == 0, "an entry's (student, type, reference) is in the ledger twice"
    assert drift == 0, "an entry's balance_after is not the running sum of the entries"
    announced = {
        json.loads(r.value)["data"]["transaction_id"]
        for topic in ("coins.credited", "coins.debited")
        for r in records[topic]
    }
    assert announced == entries, "an entry without its result, or a result without its entry"
    assert statuses == stream.statuses, "a payment is not in the status its events imply"


def check_metrics(text: str, sent: dict[Coordinates, Input], dead: int) -> None:
    """Only records the client cannot parse count as poison; no valid event failed inside."""
    poison: Counter[str] = Counter()
    dead_lettered = None
    for line in text.splitlines():
        if line.startswith("payment_worker_poison_messages_total{"):
            kind = line.split('event_type="', 1)[1].split('"', 1)[0]
            poison[kind] += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("payment_worker_dead_lettered_total "):
            dead_lettered = int(float(line.rsplit(" ", 1)[1]))
    unreadable = Counter(i.topic for i in sent.values() if i.kind == "malformed.unreadable")
    assert +poison == unreadable, f"poison by event type {dict(poison)}, unreadable {unreadable}"
    assert dead_lettered == dead


def check_log(log: Path) -> None:
    """No error but for the records the client cannot parse (and the client's own chatter)."""
    expected = {"a record cannot be parsed; finding it", "unreadable record dead-lettered"}
    errors = []
    for line in log.read_text(errors="replace").splitlines():
        entry = json.loads(line) if line.startswith("{") else {"level": "?", "message": line}
        if (
            entry.get("level") not in ("DEBUG", "INFO", "WARNING")
            and not entry.get("logger", "").startswith("aiokafka")
            and entry.get("message") not in expected
        ):
            errors.append(line[:500])
    assert not errors, f"{len(errors)} errors in the worker's log: {errors[:5]}"
