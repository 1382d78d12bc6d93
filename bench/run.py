"""The throughput and latency benchmark: `scripts/bench` (see docs/performance.md).

One run measures, on the same generated workload (`bench/workload.py`):

1. the worker as built: events/s from the first event consumed to the last result published,
   and the worker's peak RSS;
2. the same worker with one event per transaction (`WORKER_BATCH_MAX_RECORDS=1`), on the first
   `--per-event-sample` events of the same stream;
3. the raw limits: an aiokafka `getmany` drain plus JSON decode of the same topics, and the same
   SQL effects written as one set-based statement per 1,000 events with no Kafka, in today's
   storage shape (only payments' results queued in the outbox) and in the one before (every
   result queued);
4. latency under open-loop load (events produced on a fixed schedule, whatever the worker does)
   at fractions of the measured maximum: p50, p99, p99.9 from the scheduled production time to
   the broker's append time of the result.

It checks that the ledger and payments are what the input implies, prints one table and the
ratios, and writes `bench/results/latest.json` and the latency plot.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import logging
import os
import re
import socket
import statistics
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.partitioner import DefaultPartitioner
from pydantic import AwareDatetime, BaseModel

from bench.peers import PEERS, run_peer
from bench.workload import (
    CATALOG,
    COURSE_REWARD,
    GATEWAY,
    MIXES,
    REFERRAL_REWARD,
    SEED_COINS,
    WEBHOOK_SECRET,
    Event,
    Expected,
    Workload,
    expected,
    generate,
    redemption_cost,
)
from worker.core import jsontext
from worker.core.catalog import CatalogItem, UpsertItem
from worker.core.coins import CoinCommand
from worker.core.payments import (
    Known,
    OpenPayment,
    PaymentDefaults,
    decide_payments,
)
from worker.core.registry import BY_TYPE
from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS
from worker.db.catalog import apply_catalog_commands
from worker.db.coins import apply_coin_commands
from worker.db.migrate import apply_migrations
from worker.db.payments import write_payment_plan

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"  # --out changes it
PARTITIONS = 6
JWT_SECRET = "bench-only-jwt-secret-of-32-bytes-or-more"  # noqa: S105 - a local bench
# How long the latency runs' worker warms up before the first point is measured.
WARM_UP_SECONDS = 3.0
# How long the results of a latency run may take to be read back, once all were published.
RESULTS_WAIT_SECONDS = 300
# A latency point whose bench producer lagged (p99) by more than this share of the p99 measured
# is void: the latency it reports is the bench's own.
VOID_LAG_SHARE = 0.1
# The latency runs' workload is drawn apart from the throughput runs' (another seed).
LATENCY_SEED = 7
RAW_SQL = (ROOT / "bench" / "raw_effects.sql").read_text()
RAW_READS = (ROOT / "bench" / "raw_reads.sql").read_text()
EXTRA_ENV: dict[str, str] = {}  # --worker-env: settings for every worker of the run


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the environment: databases, topics, worker processes -------------------------------------


@dataclass
class Scenario:
    """One isolated run: its own database (seeded), topic prefix and consumer group."""

    name: str
    server_url: str
    bootstrap: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"bench{self.tag}."

    @property
    def database(self) -> str:
        return f"bench_{self.tag}"

    @property
    def database_url(self) -> str:
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{self.database}"))

    async def create(self, workload: Workload) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            await conn.execute(f"CREATE DATABASE {self.database}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.database_url)
        try:
            await apply_migrations(conn)
            await seed(conn, workload)
        finally:
            await conn.close()
        await create_topics(self.bootstrap, self.prefix)

    async def drop(self) -> None:
        conn = await asyncpg.connect(self.server_url)
        try:
            for attempt in range(20):
                try:
                    await conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
                    break
                except asyncpg.InsufficientPrivilegeError:
                    # An autovacuum worker (the superuser's) was busy in it: it ends by itself.
                    if attempt == 19:
                        raise
                    await asyncio.sleep(0.5)
        finally:
            await conn.close()
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            topics = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            await admin.delete_topics(topics)
        finally:
            await admin.close()


async def seed(conn: asyncpg.Connection, workload: Workload) -> None:
    """Every student's starting balance, the catalog, and the payments the webhooks report on."""
    now = datetime.now(UTC)
    async with conn.transaction():
        commands = [
            CoinCommand(
                s,
                "manual_adjustment",
                f"seed-{s}",
                SEED_COINS,
                SEED_COINS,
                "seed",
                "coins.adjustment.requested",
            )
            for s in workload.students
        ]
        await apply_coin_commands(conn, commands, now)
        items = [
            UpsertItem(
                CatalogItem(item_id, 1, item_id, cost, stock, now - timedelta(days=1), None, limit),
                f"seed-{item_id}",
                "catalog.item.upserted",
                "seed",
                ("bench", "admin"),
            )
            for item_id, (cost, stock, limit) in CATALOG.items()
        ]
        await apply_catalog_commands(conn, items, now)
        opens = [
            OpenPayment(
                pid,
                student,
                "course-seed",
                49900,
                "INR",
                None,
                f"seed-{pid}",
                "payment.requested",
                "seed",
            )
            for pid, student in workload.seeded_payments.items()
        ]
        # Long enough for any run: nothing expires mid-run.
        defaults = PaymentDefaults("mock", timedelta(days=1), instant={"mock": GATEWAY})
        plan = decide_payments(opens, Known(), defaults, now)
        # The seed's own results are not queued: the run's results are the events' alone.
        await write_payment_plan(conn, dataclasses.replace(plan, messages=[]), now)


async def create_topics(bootstrap: str, prefix: str) -> None:
    """Inputs keep the producer's time; results carry the broker's append time (latency)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        append_time = {"message.timestamp.type": "LogAppendTime"}
        await admin.create_topics(
            [NewTopic(prefix + t, PARTITIONS, 1) for t in (*INPUT_TOPICS, DLQ_TOPIC)]
            + [
                NewTopic(prefix + t, PARTITIONS, 1, topic_configs=append_time)
                for t in OUTPUT_TOPICS
            ]
        )
    finally:
        await admin.close()


@dataclass
class Worker:
    """One `payment-worker run`: one worker process, or with WORKER_PROCESSES=n a supervisor
    and n processes, process i serving its sidecar on `port + i`."""

    process: asyncio.subprocess.Process
    port: int
    count: int = 1
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The processes doing the work: the worker, or the supervisor and its children."""
        if self.count == 1:
            return [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        found = [self.process.pid, *map(int, children.read_text().split())]
        if len(found) != self.count + 1:
            raise RuntimeError(f"{self.count} worker processes expected, found {found[1:]}")
        return found

    async def metrics(self) -> dict[str, float]:
        """Consumed, published (results), backlog: summed from every process's /metrics."""
        if not self.clients:
            self.clients = [
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port + i}", timeout=5)
                for i in range(self.count)
            ]
        totals = {"consumed": 0.0, "published": 0.0, "backlog": 0.0}
        for client in self.clients:
            text = (await client.get("/metrics", params=COUNTED)).text
            for line in text.splitlines():
                if line.startswith(
                    ("payment_worker_messages_total{", "payment_worker_dead_lettered_total ")
                ):
                    totals["consumed"] += float(line.rsplit(" ", 1)[1])
                elif line.startswith("payment_worker_published_total{") and DLQ_TOPIC not in line:
                    totals["published"] += float(line.rsplit(" ", 1)[1])
                elif line.startswith("payment_worker_outbox_backlog "):
                    # The outbox is shared: every process sees the same one.
                    totals["backlog"] = max(totals["backlog"], float(line.rsplit(" ", 1)[1]))
        return totals

    def peak_rss_mb(self) -> float:
        """The largest peak RSS of one worker process (not the supervisor's)."""
        peaks = []
        for pid in self.pids()[1:] if self.count > 1 else self.pids():
            status = Path(f"/proc/{pid}/status").read_text()
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            peaks.append(int(match.group(1)) / 1024 if match else float("nan"))
        return max(peaks)

    async def stop(self) -> None:
        for client in self.clients:
            await client.aclose()
        if self.process.returncode is None:
            self.process.terminate()
            await asyncio.wait_for(self.process.wait(), 60)


def free_ports(count: int) -> int:
    """The first of `count` consecutive free ports on loopback."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first: int = probe.getsockname()[1]
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except (OSError, OverflowError):
            continue
        return first


async def start_worker(scenario: Scenario, count: int = 1, **overrides: str) -> Worker:
    """`payment-worker run` on the scenario, with `count` worker processes; ready when every
    process's sidecar is."""
    port = free_ports(count)
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": scenario.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": scenario.bootstrap,
        "KAFKA_TOPIC_PREFIX": scenario.prefix,
        "KAFKA_CONSUMER_GROUP": f"bench-{scenario.tag}-{scenario.name}",
        "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
        "PAYMENT_WEBHOOK_SECRET_MOCK": WEBHOOK_SECRET,
        "SIDECAR_JWT_SECRET": JWT_SECRET,
        "SIDECAR_HOST": "127.0.0.1",
        "PAYMENT_SERVICE_PORT": str(port),
        "WORKER_PROCESSES": str(count),
        "LOG_LEVEL": "WARNING",
        **EXTRA_ENV,
        **overrides,
    }
    log = (RESULTS / f"worker-{scenario.name}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "worker", "run", env=env, stdout=log, stderr=log
    )
    worker = Worker(process, port, count)
    deadline = time.monotonic() + 90
    async with httpx.AsyncClient(timeout=2) as client:
        for index in range(count):
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"worker exited {process.returncode}; see {log.name}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"worker process {index} not ready after 90 s")
                try:
                    url = f"http://127.0.0.1:{port + index}/readyz"
                    if (await client.get(url)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
    return worker


# --- producing --------------------------------------------------------------------------------


def make_producer(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
    )


# The samples `Worker.metrics` reads, asked for by name: the bench polls ten times a second,
# and the whole text (every partition's lag, the histograms) cost the worker 2 to 3% of its CPU.
COUNTED = [
    ("name[]", name)
    for name in (
        "payment_worker_messages_total",
        "payment_worker_dead_lettered_total",
        "payment_worker_published_total",
        "payment_worker_outbox_backlog",
    )
]
HEADERS = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


async def produce_all(bootstrap: str, prefix: str, events: list[Event]) -> float:
    """Fill the topics as fast as the broker takes them; returns the seconds it took."""
    producer = make_producer(bootstrap)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for n, event in enumerate(events, 1):
            pending.append(
                await producer.send(
                    prefix + event.kind, event.value, key=event.key, headers=HEADERS
                )
            )
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if n % 50_000 == 0:
                say(f"  produced {n:,} / {len(events):,}")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def produce_at(bootstrap: str, prefix: str, events: list[Event], rate: float) -> list[float]:
    """Open loop: event i is due at start + i / rate, whatever the worker does. Returns each
    event's scheduled time (Unix seconds): latency is measured from there, so a producer that
    falls behind its schedule shows up in the latency instead of hiding it. No linger: the
    latency measured is the worker's, not the producer's batching."""
    producer = make_producer(bootstrap, linger_ms=0)
    await producer.start()
    loop = asyncio.get_running_loop()
    start_loop, start_wall = loop.time() + 0.05, time.time() + 0.05
    due_times, lags, pending = [], [], []
    try:
        for n, event in enumerate(events):
            due = n / rate
            ahead = start_loop + due - loop.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            due_wall = start_wall + due
            due_times.append(due_wall)
            lags.append(max(0.0, time.time() - due_wall) * 1000)
            pending.append(
                await producer.send(
                    prefix + event.kind, event.value, key=event.key, headers=HEADERS,
                    timestamp_ms=int(due_wall * 1000),
                )
            )  # fmt: skip
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return due_times, lags


# --- measuring --------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


# CPU seconds so far by whom they count for ("worker", "postgres", "kafka"), then by process:
# (pid, start time), since the kernel may give a pid to another process.
Snapshot = dict[str, dict[tuple[int, int], float]]


def _cpu(pid: int) -> tuple[tuple[int, int], float] | None:
    """(pid, start time) and the user + system CPU seconds of process `pid` (all its threads),
    from /proc; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (pid, int(fields[19])), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_snapshot(worker_pids: Iterable[int]) -> Snapshot:
    """CPU so far of the worker's processes, of every local PostgreSQL process (the server's
    backends, writers and autovacuum: all processes named `postgres`) and of the Kafka broker
    (the java process running kafka.Kafka), each process on its own (`cpu_spent`)."""
    found: Snapshot = {"worker": {}, "postgres": {}, "kafka": {}}

    def add(group: str, pid: int) -> None:
        if (cpu := _cpu(pid)) is not None:
            found[group][cpu[0]] = cpu[1]

    for pid in worker_pids:
        add("worker", pid)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm == "postgres":
                add("postgres", int(entry.name))
            elif comm == "java" and b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                add("kafka", int(entry.name))
        except OSError:
            continue
    return found


def cpu_spent(first: Snapshot, last: Snapshot) -> dict[str, float]:
    """CPU seconds each group used between two snapshots: a process seen in both, the
    difference; one started between them, all of its CPU. One that ended between them is
    missed (PostgreSQL's backends live as long as their connections), never subtracted."""
    return {
        group: sum(cpu - first[group].get(process, 0.0) for process, cpu in found.items())
        for group, found in last.items()
    }


async def run_to_completion(
    worker: Worker | Sequence[Worker], total: int, label: str, since: float | None = None
) -> tuple[float, float, dict[str, float]]:
    """Seconds from the first event consumed (or from `since`, a `time.perf_counter()`) to the
    last result published, the rate, and the CPU microseconds per event of the worker processes
    (summed), PostgreSQL and Kafka over that span. Several workers are one group: their counts
    add up; the outbox is shared."""
    workers = [worker] if isinstance(worker, Worker) else list(worker)
    pids = [pid for w in workers for pid in w.pids()]
    first, last = since, None
    cpu_first = cpu_snapshot(pids)
    report = time.monotonic()
    while True:
        now = time.perf_counter()
        each = [await w.metrics() for w in workers]
        totals = {
            "consumed": sum(t["consumed"] for t in each),
            "published": sum(t["published"] for t in each),
            "backlog": max(t["backlog"] for t in each),
        }
        if first is None and totals["consumed"] > 0:
            first = now
            cpu_first = cpu_snapshot(pids)
        if totals["published"] >= total and totals["backlog"] == 0:
            last = now
            cpu_last = cpu_snapshot(pids)
            break
        for w in workers:
            if w.process.returncode is not None:
                raise RuntimeError(f"{label}: worker exited {w.process.returncode}")
        if time.monotonic() - report > 5:
            say(
                f"  {label}: consumed {totals['consumed']:,.0f}, "
                f"published {totals['published']:,.0f} / {total:,}"
            )
            report = time.monotonic()
        await asyncio.sleep(0.1)  # the resolution of the measure: 0.1 s (under 1% of a run)
    if first is None:  # done before the first poll saw anything: count from the last
        first = last
    seconds = max(last - first, 1e-9)
    cpu = {k: spent * 1e6 / total for k, spent in cpu_spent(cpu_first, cpu_last).items()}
    return seconds, total / seconds, cpu


async def check_ledger(scenario: Scenario, want: Expected) -> list[str]:
    """Every difference between the database and what the input implies (empty: correct)."""
    problems: list[str] = []
    conn = await asyncpg.connect(scenario.database_url)
    try:
        rows = await conn.fetch("SELECT student_id, balance FROM coin_wallets")
        balances = {r["student_id"]: r["balance"] for r in rows}
        wrong = [s for s, b in want.balances.items() if balances.get(s) != b]
        if wrong or len(balances) != len(want.balances):
            problems.append(f"{len(wrong)} balances differ (e.g. {wrong[:3]})")
        entries = dict(
            await conn.fetch("SELECT type, count(*) FROM coin_transactions GROUP BY type")
        )
        if entries != dict(want.entries):
            problems.append(f"ledger entries {entries} != expected {dict(want.entries)}")
        drift = await conn.fetchval(
            "SELECT count(*) FROM coin_wallets w WHERE w.balance <>"
            " (SELECT coalesce(sum(amount), 0)"
            " FROM coin_transactions t WHERE t.student_id = w.student_id) OR w.balance < 0"
        )
        if drift:
            problems.append(f"{drift} wallets differ from their entries or are negative")
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM payments GROUP BY status"))
        if statuses != {k: v for k, v in want.payment_statuses.items() if v}:
            problems.append(f"payments {statuses} != expected {dict(want.payment_statuses)}")
        stock = dict(await conn.fetch("SELECT item_id, stock FROM catalog_items"))
        if stock != want.stock:
            problems.append(f"catalog stock {stock} != expected {want.stock}")
        if backlog := await conn.fetchval("SELECT count(*) FROM outbox"):
            problems.append(f"{backlog} messages still in the outbox")
    finally:
        await conn.close()
    published = await count_results(scenario)
    if published < want.results:
        problems.append(f"{published} results on the result topics, expected {want.results}")
    return problems


async def count_results(scenario: Scenario) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=scenario.bootstrap)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(scenario.prefix + t, p) for t in OUTPUT_TOPICS for p in range(PARTITIONS)
        ]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def raw_kafka_drain(scenario: Scenario, total: int) -> float:
    """getmany + json.loads of every input record, nothing else: events/s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=scenario.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(
            [
                TopicPartition(scenario.prefix + t, p)
                for t in INPUT_TOPICS
                for p in range(PARTITIONS)
            ]
        )
        await consumer.seek_to_beginning()
        seen, started = 0, time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for record in records:
                    json.loads(record.value)
                seen += len(records)
        return total / (time.perf_counter() - started)
    finally:
        await consumer.stop()


async def raw_sql(
    scenario: Scenario, workload: Workload, events: list[Event], *, queue_all: bool
) -> float:
    """The effects the worker writes for `events`, as one statement per 1,000: events/s.
    `queue_all`: every result through the outbox, as before; else only payments' results."""
    rows = raw_effects(workload, events)
    conn = await asyncpg.connect(scenario.database_url)
    try:
        await conn.execute("TRUNCATE outbox")
        started = time.perf_counter()
        for start in range(0, len(events), 1000):
            chunk = [row[start : start + 1000] for row in rows]
            await conn.execute(RAW_SQL, *chunk, queue_all)
        return len(events) / (time.perf_counter() - started)
    finally:
        await conn.close()


class Envelope(BaseModel):
    """Less validation than the contract asks of every input (CONTRACT section 1): the
    CloudEvents 1.0 attributes the worker requires, a time with its offset, and data that is an
    object; not the ids' limits, nor each type's data, which the worker validates too."""

    specversion: Literal["1.0"]
    id: str
    source: str
    type: str
    subject: str
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    data: dict[str, Any]


async def raw_end_to_end(
    scenario: Scenario,
    workload: Workload,
    events: list[Event],
    *,
    group: str | None = None,
    until: int | None = None,
    assigned: Any = None,
    reads: bool = False,
) -> dict[str, Any]:
    """The least any pipeline on this stack does per event, end to end: events/s.

    The worker's libraries and durability, and none of its code: getmany (500 records, as the
    worker), `json.loads` of each record, the SQL effects of `raw_sql` for the batch as one
    statement in one transaction (its rows computed before the run, so deciding costs
    nothing), a result per record (its own bytes) sent by an idempotent `acks=all` producer in
    one producer batch per partition, and the offsets committed once the broker took them. As
    the worker does, a batch's results and offsets go out while the next batch is written.
    It reads nothing before writing, so it stores no refusals it did not know in advance, and
    checks no repeats: a floor, not a rival.

    With `reads`, it also does part of what the contract asks before those writes: each record
    is parsed by the worker's `jsontext.loads` (repeated member names refused) and validated as a
    CloudEvents envelope (`Envelope`) instead of `json.loads` alone, and each batch first runs
    `bench/raw_reads.sql` in its transaction (its wallets and payments locked, its stored
    decisions read; one round trip). It still decides nothing from what it read, so it too is a
    floor.

    Alone, it reads all of `events` and returns its events/s and CPU per event (µs: its own
    process, PostgreSQL and the broker, from the first batch to the last commit; the bench does
    nothing else meanwhile). In a group (`bench/floor.py`, one process
    each) it runs until `until` records, or for ever, and calls `assigned` with each new
    assignment.
    """
    columns = raw_effects(workload, events)
    rows = {event.value: [column[n] for column in columns] for n, event in enumerate(events)}
    looked_up = read_rows(events, columns) if reads else {}
    # Refusals were decided in the workload's order; it is seeded so that the same ones hold in
    # any order (bench/workload.py), and each balance follows the order consumed.
    balances = dict.fromkeys(workload.students, SEED_COINS)
    topics = [scenario.prefix + t for t in INPUT_TOPICS]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=scenario.bootstrap,
        group_id=group or f"raw-e2e-{scenario.tag}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # As the worker: partition p of every topic to one member, so that a student's events
        # (and the balances computed here) stay in one process.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        async def on_partitions_revoked(self, revoked: Any) -> None:
            if finishing is not None:
                await finishing

        async def on_partitions_assigned(self, partitions: Any) -> None:
            if assigned is not None:
                assigned(partitions)

    consumer.subscribe(topics, listener=Listener())
    until = len(events) if until is None and group is None else until
    producer = make_producer(scenario.bootstrap, linger_ms=0)
    partitioner = DefaultPartitioner()
    finishing: asyncio.Task[None] | None = None
    result_topic = scenario.prefix + "coins.credited"
    conn = await asyncpg.connect(scenario.database_url)
    await consumer.start()
    await producer.start()
    known = list(await producer.partitions_for(result_topic))

    async def finish(records: list[Any], offsets: dict[TopicPartition, int]) -> None:
        by_partition: dict[int, Any] = {}
        deliveries = []
        for record in records:
            partition = partitioner(record.key, known, known)
            batch = by_partition.get(partition)
            if (
                batch is None
                or batch.append(key=record.key, value=record.value, timestamp=None, headers=HEADERS)
                is None
            ):
                if batch is not None:
                    deliveries.append(
                        await producer.send_batch(batch, result_topic, partition=partition)
                    )
                batch = by_partition[partition] = producer.create_batch()
                batch.append(key=record.key, value=record.value, timestamp=None, headers=HEADERS)
        for partition, batch in by_partition.items():
            deliveries.append(await producer.send_batch(batch, result_topic, partition=partition))
        await asyncio.gather(*deliveries)
        await consumer.commit(offsets)

    try:
        await conn.execute("TRUNCATE outbox")
        seen, started = 0, 0.0
        cpu_first: Snapshot = {}
        while until is None or seen < until:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            if not started:
                cpu_first = cpu_snapshot([os.getpid()])
                started = time.perf_counter()
            records = [r for rs in batch.values() for r in rs]
            chunk: list[list[Any]] = [[] for _ in columns]
            for record in records:
                if reads:  # the worker's parser: it refuses repeated member names
                    Envelope.model_validate(jsontext.loads(record.value))
                else:
                    json.loads(record.value)
                row = rows[record.value]
                if (student := row[0]) is not None:  # balances in the order consumed
                    balances[student] += row[3] or 0
                    row = [*row[:4], balances[student], *row[5:]]
                for column, value in zip(chunk, row, strict=True):
                    column.append(value)
            async with conn.transaction():
                if reads:
                    keys = read_keys([looked_up[record.value] for record in records])
                    found = Counter(row[0] for row in await conn.fetch(RAW_READS, *keys))
                    # Every wallet, and every payment a webhook reports on, exists before the
                    # run: a read that found fewer of them read too little.
                    wanted = (len(set(keys[0])), len(set(keys[4])))
                    if (found["wallet"], found["changed"]) != wanted:
                        raise RuntimeError(f"the contract's reads missed rows: found {found}")
                await conn.execute(RAW_SQL, *chunk, False)
            if finishing is not None:
                await finishing
            offsets = {tp: rs[-1].offset + 1 for tp, rs in batch.items()}
            finishing = asyncio.create_task(finish(records, offsets))
            seen += len(records)
        if finishing is not None:
            await finishing
        seconds = time.perf_counter() - started
        cpu_last = cpu_snapshot([os.getpid()])
        cpu = {k: spent * 1e6 / seen for k, spent in cpu_spent(cpu_first, cpu_last).items()}
        return {"events_per_s": seen / seconds, "cpu_us_per_event": cpu}
    finally:
        await producer.stop()
        await consumer.stop()
        await conn.close()


def floor_cpu(result: dict[str, Any]) -> str:
    """`raw_end_to_end`'s CPU per event, as words."""
    cpu = result["cpu_us_per_event"]
    return (
        f"CPU per event: pipeline {cpu['worker']:.0f}, PostgreSQL {cpu['postgres']:.0f}, "
        f"Kafka {cpu['kafka']:.0f} µs"
    )


# What `bench/raw_reads.sql` looks up for one event: its coin key (student, ledger type,
# reference as written), the id of the payment it requests, or the provider payment id of the
# payment it reports on.
ReadRow = tuple[str | None, str | None, str | None, str | None, str | None]


def read_rows(events: list[Event], columns: list[list[Any]]) -> dict[bytes, ReadRow]:
    """Per event (by value), what the contract's reads look up for it (`raw_effects`'
    `columns`). A duplicate looks up what its original wrote, as the worker's replay does."""
    originals: dict[tuple[str, str], ReadRow] = {}
    found: dict[bytes, ReadRow] = {}
    for n, event in enumerate(events):
        same = (event.kind, json.dumps(json.loads(event.value)["data"], sort_keys=True))
        if event.duplicate:
            found[event.value] = originals[same]  # the original comes earlier in the workload
            continue
        student, ledger_type, reference, payment, status = (columns[i][n] for i in (0, 1, 2, 6, 7))
        requested = payment if status == "initiated" else None
        changed = payment if status not in (None, "initiated") else None
        found[event.value] = originals[same] = (
            student, ledger_type, reference, requested, changed
        )  # fmt: skip
    return found


def read_keys(rows: list[ReadRow]) -> tuple[list[str], ...]:
    """`bench/raw_reads.sql`'s arguments for a batch's `read_rows`: the coin events'
    (student, type, reference), the payments requested and the payments reported on."""
    students, types, references, requested, changed = [], [], [], [], []
    for student, ledger_type, reference, payment_id, provider_payment_id in rows:
        if student is not None and ledger_type is not None and reference is not None:
            students.append(student)
            types.append(ledger_type)
            references.append(reference)
        elif payment_id is not None:
            requested.append(payment_id)
        elif provider_payment_id is not None:
            changed.append(provider_payment_id)
    return students, types, references, requested, changed


async def raw_end_to_end_group(
    server_url: str, bootstrap: str, workload: Workload, args: argparse.Namespace, count: int
) -> dict[str, float]:
    """`raw_end_to_end` with `count` processes in one group (`bench/floor.py`), started on
    empty topics and fed as they run: events/s from the first event produced to the last
    offset committed."""
    scenario = Scenario("raw-e2e-group", server_url, bootstrap)
    await scenario.create(workload)
    group = f"raw-e2e-group-{scenario.tag}"
    arguments = {
        "--server-url": server_url, "--bootstrap": bootstrap, "--tag": scenario.tag,
        "--group": group, "--mix": args.mix, "--events": str(args.events),
        "--students": str(args.students),
    }  # fmt: skip
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.floor",
            *(x for pair in arguments.items() for x in pair),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        shares = [0] * len(children)
        settled = asyncio.Event()

        async def follow(n: int, child: asyncio.subprocess.Process) -> None:
            if child.stdout is None:  # never: it is a pipe
                return
            async for line in child.stdout:
                if line.startswith(b"assigned "):
                    shares[n] = int(line.split()[1])
                    if all(shares) and sum(shares) == len(INPUT_TOPICS) * PARTITIONS:
                        settled.set()
                    else:
                        settled.clear()

        following = [asyncio.create_task(follow(n, c)) for n, c in enumerate(children)]
        async with asyncio.timeout(180):
            await settled.wait()
        started = time.perf_counter()
        producer_seconds = await produce_all(bootstrap, scenario.prefix, workload.events)
        async with asyncio.timeout(600):
            while True:
                offsets = await admin.list_consumer_group_offsets(group)
                if sum(max(o.offset, 0) for o in offsets.values()) >= len(workload.events):
                    break
                await asyncio.sleep(0.1)
        seconds = time.perf_counter() - started
        for task in following:
            task.cancel()
        return {
            "count": count,
            "seconds": seconds,
            "events_per_s": len(workload.events) / seconds,
            "producer_seconds": producer_seconds,
        }
    finally:
        await admin.close()
        for child in children:
            if child.returncode is None:
                child.kill()
            await child.wait()
        await scenario.drop()


def raw_effects(workload: Workload, events: list[Event]) -> list[list[Any]]:
    """Per event (in order): its ledger row (if any), its payment change (if any), its result."""
    balances = dict.fromkeys(workload.students, SEED_COINS)
    vouchers: Counter[str] = Counter()
    columns: list[list[Any]] = [[] for _ in range(11)]
    for n, event in enumerate(events):
        data = json.loads(event.value)["data"]
        student = amount = reference = ledger_type = payment = status = None
        if event.duplicate:
            pass  # a repeat writes only its result
        elif event.kind == "course.completed":
            ledger_type = BY_TYPE[event.kind].effect
            student, reference, amount = data["student_id"], data["course_id"], COURSE_REWARD
        elif event.kind == "referral.succeeded":
            ledger_type = BY_TYPE[event.kind].effect
            student, reference = data["referrer_id"], data["referral_id"]
            amount = data.get("reward_coins") or REFERRAL_REWARD
        elif event.kind == "coins.redemption.requested":
            ledger_type = BY_TYPE[event.kind].effect
            student, reference = data["student_id"], data["redemption_id"]
            amount = -redemption_cost(data, vouchers)
        elif event.kind == "payment.requested":
            payment, status = data["payment_id"], "initiated"
        else:
            body = json.loads(data["body"])
            payment = body["data"]["provider_payment_id"]
            status = body["type"].removeprefix("payment.")
        if student is not None:
            balances[student] += amount or 0
        for column, value in zip(
            columns,
            (student, ledger_type, f"{reference}#{n}" if reference else None, amount,
             balances.get(student or "", 0), str(uuid.uuid4()), payment, status,
             event.kind, event.key, event.value),
            strict=True,
        ):  # fmt: skip
            column.append(value)
    return columns


async def latency(
    scenario: Scenario, workload: Workload, loads: list[float], seconds: float
) -> list[dict[str, float]]:
    """Open-loop runs at each rate in `loads` (events/s) against one worker: percentiles.

    The worker first takes `WARM_UP_SECONDS` of the first load, not measured: a fresh worker's
    first batches are slower (each connection prepares its statements on first use), and they
    would otherwise fall in the first point's tail. The runs after it measure a running worker.
    """
    worker = await start_worker(scenario)
    try:

        async def done(offset: int, label: str) -> None:
            await run_to_completion(worker, offset, label)

        warm_up, phases = await open_loop(scenario, workload, loads, seconds, done)
    finally:
        await worker.stop()
    produced = _produced(warm_up, phases)
    appended = await result_times(scenario, {event.result_id for event in produced})
    return latency_report(phases, appended, lambda event: event.result_id, warm_up)


async def floor_latency(
    server_url: str,
    bootstrap: str,
    workload: Workload,
    loads: list[float],
    seconds: float,
    made_by: argparse.Namespace,
) -> list[dict[str, float]]:
    """`latency` for the floor (`raw_end_to_end` in one `bench/floor.py` process, which
    answers each event with its own bytes on `coins.credited`), at the same loads and on the
    same events (`made_by`: the mix, students and seed `workload` was generated from, for the
    floor to generate it too): the latency this machine and the worker's libraries allow, with
    none of its code."""
    scenario = Scenario("floor-latency", server_url, bootstrap)
    group = f"floor-latency-{scenario.tag}"
    arguments = {
        "--server-url": server_url, "--bootstrap": bootstrap, "--tag": scenario.tag,
        "--group": group, "--mix": made_by.mix, "--events": str(len(workload.events)),
        "--students": str(made_by.students), "--seed": str(made_by.seed),
    }  # fmt: skip
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    child: asyncio.subprocess.Process | None = None
    try:
        await scenario.create(workload)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.floor",
            *(x for pair in arguments.items() for x in pair),
            stdout=asyncio.subprocess.PIPE,
        )
        await admin.start()
        if child.stdout is None:  # never: it is a pipe
            raise RuntimeError("the floor's output is not piped")
        everything = f"assigned {len(INPUT_TOPICS) * PARTITIONS}\n".encode()
        async with asyncio.timeout(180):
            while (line := await child.stdout.readline()) != everything:
                if not line:  # it ended before the group held every partition
                    raise RuntimeError(f"the floor exited {await child.wait()} before it began")

        async def done(offset: int, label: str) -> None:
            async with asyncio.timeout(600):
                while True:
                    offsets = await admin.list_consumer_group_offsets(group)
                    if sum(max(o.offset, 0) for o in offsets.values()) >= offset:
                        return
                    await asyncio.sleep(0.1)

        warm_up, phases = await open_loop(scenario, workload, loads, seconds, done)
        produced = _produced(warm_up, phases)
        appended = await result_times(scenario, {_event_id(event) for event in produced})
    finally:
        await admin.close()
        if child is not None:
            if child.returncode is None:
                child.kill()
            await child.wait()
        await scenario.drop()
    return latency_report(phases, appended, _event_id, warm_up)


def _event_id(event: Event) -> str:
    """The id of the floor's result for `event`: the event's own."""
    return str(json.loads(event.value)["id"])


# One open-loop phase: its rate, events, their scheduled times and the producer's lag on each.
Phase = tuple[float, list[Event], list[float], list[float]]


async def open_loop(
    scenario: Scenario,
    workload: Workload,
    loads: list[float],
    seconds: float,
    done: Callable[[int, str], Awaitable[None]],
) -> tuple[list[Event], list[Phase]]:
    """The warm-up, then each load for `seconds`, each waited out by `done(events so far)`.
    Returns the warm-up's events and the measured phases."""
    warm_up = workload.events[: int(loads[0] * WARM_UP_SECONDS)]
    offset = len(warm_up)
    say(f"  warm-up: {loads[0]:,.0f} events/s for {WARM_UP_SECONDS:g} s, not measured")
    await produce_at(scenario.bootstrap, scenario.prefix, warm_up, loads[0])
    await done(offset, "warm-up")
    phases = []
    for rate in loads:
        events = workload.events[offset : offset + int(rate * seconds)]
        offset += len(events)
        say(f"  latency: {rate:,.0f} events/s for {seconds:g} s ({len(events):,} events)")
        due, lags = await produce_at(scenario.bootstrap, scenario.prefix, events, rate)
        await done(offset, f"latency {rate:,.0f}/s")
        phases.append((rate, events, due, lags))
    return warm_up, phases


def _produced(warm_up: list[Event], phases: list[Phase]) -> list[Event]:
    return [*warm_up, *(event for _, events, _, _ in phases for event in events)]


def latency_report(
    phases: list[Phase],
    appended: dict[str, list[float]],
    result_of: Callable[[Event], str],
    warm_up: Sequence[Event],
) -> list[dict[str, float]]:
    """Per phase: percentiles of each event's result append time after its scheduled time. The
    `warm_up` events take their records first, unmeasured: a duplicate of one of them, measured
    later, gets its own record, not the original's (which came before it was sent). Every event
    has a record of its own (a result published again, at least once, leaves one over)."""
    needed = Counter(result_of(event) for event in _produced(list(warm_up), phases))
    if short := sorted(i for i, count in needed.items() if len(appended[i]) < count):
        raise RuntimeError(
            f"{len(short)} results have fewer records than events, such as {short[0]}"
        )
    for event in warm_up:
        times = appended[result_of(event)]
        if len(times) > 1:
            times.pop(0)
    report = []
    for rate, events, due, lags in phases:
        samples = []
        for event, sent in zip(events, due, strict=True):
            times = appended[result_of(event)]
            samples.append(max(0.0, (times.pop(0) if len(times) > 1 else times[0]) - sent) * 1000)
        # How late the bench's own producer was against its schedule: part of the latency above
        # (measured from the schedule), but not the worker's doing.
        lag = percentiles(lags)
        found = percentiles(samples)
        report.append(
            {
                "offered": rate,
                "events": len(events),
                **found,
                "producer_lag_p99_ms": lag["p99_ms"],
                # The point measures the bench, not the worker, unless its lag is small beside it.
                "void": lag["p99_ms"] > VOID_LAG_SHARE * found["p99_ms"],
            }
        )
    return report


async def result_times(scenario: Scenario, expected: set[str]) -> dict[str, list[float]]:
    """Result id -> the broker's append times of its records, oldest first, read until every
    `expected` id has one (a result published twice, at least once as promised, has two). A
    result with an id no event of the run asked for fails the run: something published what
    it should not have (counting records instead once let such results hide others). Every
    record published when it starts is read (a duplicate event's result comes again, late)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=scenario.bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, list[float]] = defaultdict(list)
    try:
        partitions = [
            TopicPartition(scenario.prefix + t, p) for t in OUTPUT_TOPICS for p in range(PARTITIONS)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning()
        ends = await consumer.end_offsets(partitions)
        missing = set(expected)
        deadline = time.monotonic() + RESULTS_WAIT_SECONDS
        while missing or any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{len(missing)} results not found, such as {min(missing)}"
                    if missing
                    else f"the results were not read to their end in {RESULTS_WAIT_SECONDS} s"
                )
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                for record in records:
                    result_id = json.loads(record.value)["id"]
                    found[result_id].append(record.timestamp / 1000)
                    missing.discard(result_id)
    finally:
        await consumer.stop()
    if unexpected := found.keys() - expected:
        raise RuntimeError(
            f"{len(unexpected)} results no event of the run asked for, such as {min(unexpected)}"
        )
    for times in found.values():
        times.sort()
    return found


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "p999_ms": at(0.999),
        "mean_ms": statistics.fmean(ordered),
    }


# --- the whole run ----------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    global RESULTS  # set once, from --out, before anything writes there
    RESULTS = args.out
    RESULTS.mkdir(parents=True, exist_ok=True)
    EXTRA_ENV.update(item.split("=", 1) for item in args.worker_env)
    for name in ("WORKER_PROCESSES", "PAYMENT_SERVICE_PORT"):  # the bench sets them per phase
        if name in (n.upper() for n in EXTRA_ENV):
            raise SystemExit(f"--worker-env: {name} is set by the bench (use --processes)")
    server_url = os.environ["DATABASE_URL"]
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    say(f"generating {args.events:,} events ({args.mix}) over {args.students:,} students")
    workload = generate(args.events, args.students, mix=MIXES[args.mix])
    want = expected(workload, workload.events)
    gc.freeze()  # the workload lives to the end: keep the collector from rescanning it
    scenarios: list[Scenario] = []
    results: dict[str, Any] = {
        "events": args.events,
        "students": args.students,
        "mix": args.mix,
    }
    try:
        main_run = Scenario("batched", server_url, bootstrap)
        scenarios.append(main_run)
        await main_run.create(workload)
        fill = await produce_all(bootstrap, main_run.prefix, workload.events)
        say(f"topics filled in {fill:.1f} s; starting the worker (as built)")
        worker = await start_worker(main_run)
        seconds, rate, cpu = await run_to_completion(worker, args.events, "as built")
        results["batched"] = {
            "seconds": seconds,
            "events_per_s": rate,
            "peak_rss_mb": worker.peak_rss_mb(),
            "cpu_us_per_event": cpu,
        }
        await worker.stop()
        say(f"as built: {rate:,.0f} events/s, peak RSS {results['batched']['peak_rss_mb']:.0f} MB")
        say("  CPU per event: " + ", ".join(f"{name} {us:.0f} µs" for name, us in cpu.items()))
        problems = await check_ledger(main_run, want)
        results["ledger_check"] = problems or "ok"
        say(f"ledger check: {problems or 'ok'}")

        if args.processes > 1:
            results["processes"] = await processes(
                server_url, bootstrap, workload, want, args, args.processes
            )

        sample = workload.events[: args.per_event_sample]
        single = Scenario("per-event", server_url, bootstrap)
        scenarios.append(single)
        await single.create(workload)
        await produce_all(bootstrap, single.prefix, sample)
        say(f"per-event mode on the first {len(sample):,} events")
        worker = await start_worker(single, WORKER_BATCH_MAX_RECORDS="1")
        seconds, single_rate, _ = await run_to_completion(worker, len(sample), "per event")
        await worker.stop()
        single_problems = await check_ledger(single, expected(workload, sample))
        results["per_event"] = {
            "events": len(sample),
            "seconds": seconds,
            "events_per_s": single_rate,
            "ledger_check": single_problems or "ok",
        }
        say(f"per event: {single_rate:,.0f} events/s")

        say("raw limits: Kafka drain + JSON decode")
        results["raw_kafka"] = {"events_per_s": await raw_kafka_drain(main_run, args.events)}
        say(f"  {results['raw_kafka']['events_per_s']:,.0f} events/s")
        say("raw limits: the same SQL effects, one statement per 1,000 events")
        for name, queue_all in (("raw_sql", False), ("raw_sql_outbox", True)):
            raw = Scenario(name.replace("_", "-"), server_url, bootstrap)
            scenarios.append(raw)
            await raw.create(workload)
            raw_rate = await raw_sql(raw, workload, workload.events, queue_all=queue_all)
            results[name] = {"events_per_s": raw_rate}
            shape = "every result through the outbox (before)" if queue_all else "today's shape"
            say(f"  {raw_rate:,.0f} events/s, {shape}")
        say("raw limits: end to end with the least Python (the worker's stack, none of its code)")
        floor = Scenario("raw-e2e", server_url, bootstrap)
        scenarios.append(floor)
        await floor.create(workload)
        await produce_all(bootstrap, floor.prefix, workload.events)
        results["raw_e2e"] = await raw_end_to_end(floor, workload, workload.events)
        say(
            f"  {results['raw_e2e']['events_per_s']:,.0f} events/s, {floor_cpu(results['raw_e2e'])}"
        )
        say("raw limits: the same with the contract's least: envelopes validated, reads locked")
        contract = Scenario("raw-e2e-reads", server_url, bootstrap)
        scenarios.append(contract)
        await contract.create(workload)
        await produce_all(bootstrap, contract.prefix, workload.events)
        results["raw_e2e_reads"] = await raw_end_to_end(
            contract, workload, workload.events, reads=True
        )
        reads = results["raw_e2e_reads"]
        say(f"  {reads['events_per_s']:,.0f} events/s, {floor_cpu(reads)}")
        if args.processes > 1:
            say(f"raw limits: the same, {args.processes} processes in one group")
            results["raw_e2e_processes"] = await raw_end_to_end_group(
                server_url, bootstrap, workload, args, args.processes
            )
            say(f"  {results['raw_e2e_processes']['events_per_s']:,.0f} events/s")

        if args.peer_events:
            results["peers"] = await peers(server_url, bootstrap, args)

        # The latency runs feed their pipeline while it runs, the bench's producer on the same
        # two cores; the maxima above were measured on topics filled before. So each pipeline's
        # maximum is measured again as the latency runs see it (one process, fed as it runs),
        # and its latency taken again at the same shares of that.
        say("the maxima fed as they run, the bench's producer beside: the worker, the floor")
        beside_worker = await processes(server_url, bootstrap, workload, want, args, 1)
        results["beside"] = {
            "worker": beside_worker,
            "floor": await raw_end_to_end_group(server_url, bootstrap, workload, args, 1),
        }
        beside_floor = results["beside"]["floor"]["events_per_s"]
        say(f"  the floor: {beside_floor:,.0f} events/s")

        def sized(rates: list[float]) -> Workload:
            """Events enough for the warm-up and every rate, the same seed every time."""
            needed = int(sum(rates) * args.latency_seconds + rates[0] * WARM_UP_SECONDS) + 1
            made = generate(needed, args.students, seed=LATENCY_SEED, mix=MIXES[args.mix])
            gc.freeze()
            return made

        async def worker_latency(name: str, rates: list[float]) -> list[dict[str, float]]:
            made = sized(rates)
            scenario = Scenario(name, server_url, bootstrap)
            scenarios.append(scenario)
            await scenario.create(made)
            return await latency(scenario, made, rates, args.latency_seconds)

        made_by = argparse.Namespace(mix=args.mix, students=args.students, seed=LATENCY_SEED)
        shares = ", ".join(f"{s:.0%}" for s in args.loads)
        loads = [rate * share for share in args.loads]
        say(f"latency under open-loop load at {shares} of {rate:,.0f} events/s")
        results["latency"] = await worker_latency("latency", loads)
        say("latency of the floor (its one process), at the same loads on the same events")
        results["floor_latency"] = await floor_latency(
            server_url, bootstrap, sized(loads), loads, args.latency_seconds, made_by
        )
        # A target set as a share of a pipeline's own maximum is at a floor only if the floor
        # cannot meet it at that share of *its* maximum: so the floor runs again, there.
        floor_max = results["raw_e2e"]["events_per_s"]
        own = [floor_max * share for share in args.loads]
        say(f"latency of the floor at {shares} of its own {floor_max:,.0f} events/s")
        results["floor_latency_own"] = await floor_latency(
            server_url, bootstrap, sized(own), own, args.latency_seconds, made_by
        )
        # And both again at those shares of their maxima fed as they run.
        fair = [beside_worker["events_per_s"] * share for share in args.loads]
        say(f"latency at {shares} of the worker's {fair[-1] / args.loads[-1]:,.0f} events/s fed")
        results["latency_beside"] = await worker_latency("latency-beside", fair)
        fair_floor = [beside_floor * share for share in args.loads]
        say(f"latency of the floor at {shares} of its {beside_floor:,.0f} events/s fed")
        results["floor_latency_beside"] = await floor_latency(
            server_url, bootstrap, sized(fair_floor), fair_floor, args.latency_seconds, made_by
        )
    finally:
        if not args.keep:
            for scenario in scenarios:
                await scenario.drop()

    report(results, args)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    if not args.no_plot:
        plot(results, RESULTS / "latency.png")
    checks = [results["ledger_check"], results["per_event"]["ledger_check"]]
    checks += [f["check"] for f in results.get("peers", {}).values() if isinstance(f, dict)]
    checks += [results["processes"]["check"]] if "processes" in results else []
    checks += [results["beside"]["worker"]["check"]]
    return 0 if all(check == "ok" for check in checks) else 1


async def processes(
    server_url: str,
    bootstrap: str,
    workload: Workload,
    want: Expected,
    args: argparse.Namespace,
    count: int,
) -> dict[str, Any]:
    """The as-built run again, with `count` worker processes in one consumer group (one
    `payment-worker run` with WORKER_PROCESSES=count), fed while they run: the bench's producer
    sends the events beside them, as fast as it can."""
    scenario = Scenario(f"processes-{count}", server_url, bootstrap)
    await scenario.create(workload)
    try:
        say(
            f"{count} worker process{'es' if count > 1 else ''} in one group "
            f"(one `payment-worker run`, WORKER_PROCESSES={count}), fed as it runs"
        )
        # Started first, on empty topics, so the group has settled before the first event.
        workers = [await start_worker(scenario, count)]
        producing: asyncio.Task[float] | None = None
        try:
            # Timed from the first event produced, as the floor's group run is.
            started = time.perf_counter()
            producing = asyncio.create_task(
                produce_all(bootstrap, scenario.prefix, workload.events)
            )
            seconds, rate, cpu = await run_to_completion(
                workers, len(workload.events), "processes", since=started
            )
            producer_seconds = await producing
            peak = max(w.peak_rss_mb() for w in workers)
            running = len(workers[0].pids()) - (count > 1)  # not counting the supervisor
        finally:
            if producing is not None and not producing.done():
                producing.cancel()
            for w in workers:
                await w.stop()
        problems = await check_ledger(scenario, want)
        say(f"  {rate:,.0f} events/s; ledger check: {problems or 'ok'}")
        return {
            "count": count,
            "running": running,
            "seconds": seconds,
            "producer_seconds": producer_seconds,
            "events_per_s": rate,
            "peak_rss_mb": peak,
            "cpu_us_per_event": cpu,
            "check": problems or "ok",
        }
    finally:
        if not args.keep:
            await scenario.drop()


async def peers(server_url: str, bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """The FastStream peers (bench/peers.py) and the worker, each on its own copy of the same
    course-completion stream, back to back."""
    stream = generate(args.peer_events, args.students, seed=11, mix=MIXES["courses"])
    credits = len({(e.key, e.result_id) for e in stream.events})
    found: dict[str, Any] = {"events": args.peer_events}
    for name in PEERS:
        scenario = Scenario(f"peer-{name.replace(' ', '-')}", server_url, bootstrap)
        await scenario.create(stream)
        try:
            await produce_all(bootstrap, scenario.prefix, stream.events)
            say(f"peer, FastStream {name}: {args.peer_events:,} course completions")
            seconds, peer_rate = await run_peer(
                name, bootstrap, scenario.database_url,
                scenario.prefix + "course.completed", scenario.prefix + "coins.credited",
                len(stream.events),
            )  # fmt: skip
            conn = await asyncpg.connect(scenario.database_url)
            try:
                kept = await conn.fetchval("SELECT count(*) FROM peer_credits")
            finally:
                await conn.close()
            check = "ok" if kept == credits else f"{kept} credits, expected {credits}"
            found[name] = {"seconds": seconds, "events_per_s": peer_rate, "check": check}
            say(f"  {peer_rate:,.0f} events/s; credits check: {check}")
        finally:
            if not args.keep:
                await scenario.drop()
    scenario = Scenario("peer-worker", server_url, bootstrap)
    await scenario.create(stream)
    try:
        say(f"the worker on the same {args.peer_events:,} course completions")
        worker = await start_worker(scenario)  # started first: timed from its first event
        producing = asyncio.create_task(produce_all(bootstrap, scenario.prefix, stream.events))
        seconds, rate, _ = await run_to_completion(worker, len(stream.events), "worker")
        await producing
        await worker.stop()
        problems = await check_ledger(scenario, expected(stream, stream.events))
        found["worker"] = {"seconds": seconds, "events_per_s": rate, "check": problems or "ok"}
        say(f"  {rate:,.0f} events/s; ledger check: {problems or 'ok'}")
    finally:
        if not args.keep:
            await scenario.drop()
    return found


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    batched = results["batched"]["events_per_s"]
    rows = [
        (
            "worker as built (end to end)",
            f"{batched:,.0f} events/s",
            f"peak RSS {results['batched']['peak_rss_mb']:.0f} MB",
        ),
        (
            "CPU per event, as built",
            f"worker {results['batched']['cpu_us_per_event']['worker']:.0f} µs",
            f"PostgreSQL {results['batched']['cpu_us_per_event']['postgres']:.0f} µs, "
            f"Kafka broker {results['batched']['cpu_us_per_event']['kafka']:.0f} µs "
            "(process CPU from /proc)",
        ),
        *(
            [
                (
                    f"worker, {results['processes']['count']} processes in one group",
                    f"{results['processes']['events_per_s']:,.0f} events/s",
                    f"peak RSS {results['processes']['peak_rss_mb']:.0f} MB per process, "
                    f"worker CPU {results['processes']['cpu_us_per_event']['worker']:.0f} µs "
                    "per event (all processes)",
                )
            ]
            if "processes" in results
            else []
        ),
        (
            "worker, one event per transaction",
            f"{results['per_event']['events_per_s']:,.0f} events/s",
            f"first {results['per_event']['events']:,} events",
        ),
        (
            "raw: getmany + JSON decode",
            f"{results['raw_kafka']['events_per_s']:,.0f} events/s",
            "no processing",
        ),
        (
            "raw: SQL effects, 1 statement / 1,000",
            f"{results['raw_sql']['events_per_s']:,.0f} events/s",
            "no Kafka; only payments' results in the outbox (today's storage shape)",
        ),
        (
            "raw: same, every result in the outbox",
            f"{results['raw_sql_outbox']['events_per_s']:,.0f} events/s",
            "the storage shape before results were published from memory",
        ),
        (
            "raw: end to end, least Python",
            f"{results['raw_e2e']['events_per_s']:,.0f} events/s",
            "getmany, json.loads, the raw SQL per batch, results in producer batches, commit; "
            + floor_cpu(results["raw_e2e"]),
        ),
        (
            "raw: the same + the contract's reads",
            f"{results['raw_e2e_reads']['events_per_s']:,.0f} events/s",
            "envelopes parsed and validated; per batch, wallets and payments locked and stored "
            "decisions read in one statement; " + floor_cpu(results["raw_e2e_reads"]),
        ),
        *(
            [
                (
                    f"raw: end to end, {results['raw_e2e_processes']['count']} processes",
                    f"{results['raw_e2e_processes']['events_per_s']:,.0f} events/s",
                    "the same, one consumer group, timed from the first event produced",
                )
            ]
            if "raw_e2e_processes" in results
            else []
        ),
    ]
    if "beside" in results:
        rows += [
            (
                "worker fed as it runs, 1 process",
                f"{results['beside']['worker']['events_per_s']:,.0f} events/s",
                "timed from the first event produced; the bench's producer sent them all in "
                f"the first {results['beside']['worker']['producer_seconds']:.1f} s of "
                f"{results['beside']['worker']['seconds']:.1f} s",
            ),
            (
                "the floor fed as it runs, 1 process",
                f"{results['beside']['floor']['events_per_s']:,.0f} events/s",
                "the same: the producer in the first "
                f"{results['beside']['floor']['producer_seconds']:.1f} s of "
                f"{results['beside']['floor']['seconds']:.1f} s",
            ),
        ]
    if "peers" in results:
        found = results["peers"]
        worker = found["worker"]["events_per_s"]
        for name in PEERS:
            rows.append(
                (
                    f"peer: FastStream {name}",
                    f"{found[name]['events_per_s']:,.0f} events/s",
                    f"worker {worker / found[name]['events_per_s']:.1f}x this on the same "
                    f"{found['events']:,} course completions ({worker:,.0f} events/s)",
                )
            )
    floors = results.get("floor_latency") or [None] * len(results["latency"])
    for phase, floor in zip(results["latency"], floors, strict=True):
        rows.append(
            (
                f"latency at {phase['offered']:,.0f} events/s",
                f"p50 {phase['p50_ms']:.0f} ms",
                f"p99 {phase['p99_ms']:.0f} ms, p99.9 {phase['p999_ms']:.0f} ms "
                f"(bench producer lag p99 {phase['producer_lag_p99_ms']:.0f} ms"
                + (
                    f", over {VOID_LAG_SHARE:.0%} of the p99: VOID, it measures the bench)"
                    if phase.get("void")
                    else ")"
                ),
            )
        )
        if floor is not None:
            rows.append(
                (
                    "  the floor at that load",
                    f"p50 {floor['p50_ms']:.0f} ms",
                    f"p99 {floor['p99_ms']:.0f} ms, p99.9 {floor['p999_ms']:.0f} ms "
                    f"(bench producer lag p99 {floor['producer_lag_p99_ms']:.0f} ms"
                    + (", VOID)" if floor.get("void") else ")"),
                )
            )
    own = results.get("floor_latency_own") or []
    for share, floor in zip(args.loads if own else [], own, strict=True):
        rows.append(
            (
                f"floor latency at {share:.0%} of its own max",
                f"p50 {floor['p50_ms']:.0f} ms",
                f"p99 {floor['p99_ms']:.0f} ms, p99.9 {floor['p999_ms']:.0f} ms at "
                f"{floor['offered']:,.0f} events/s (bench producer lag p99 "
                f"{floor['producer_lag_p99_ms']:.0f} ms"
                + (", VOID)" if floor.get("void") else ")"),
            )
        )
    for key, whose in (("latency_beside", "the worker"), ("floor_latency_beside", "the floor")):
        for share, phase in zip(args.loads, results.get(key) or [], strict=False):
            rows.append(
                (
                    f"{whose} at {share:.0%} of its max fed",
                    f"p50 {phase['p50_ms']:.0f} ms",
                    f"p99 {phase['p99_ms']:.0f} ms, p99.9 {phase['p999_ms']:.0f} ms at "
                    f"{phase['offered']:,.0f} events/s (bench producer lag p99 "
                    f"{phase['producer_lag_p99_ms']:.0f} ms"
                    + (", VOID)" if phase.get("void") else ")"),
                )
            )
    width = max(len(r[0]) for r in rows)
    print()
    sizes = f"{results['events']:,} events, {results['students']:,} students"
    print(f"workload: {results['mix']}, {sizes}")
    print(f"{'measure':<{width}}  {'result':>18}  notes")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>18}  {note}")
    print()
    print(f"as built / per event:      {batched / results['per_event']['events_per_s']:.1f}x")
    print(f"as built / raw SQL limit:  {batched / results['raw_sql']['events_per_s']:.0%}")
    print(f"as built / raw Kafka drain: {batched / results['raw_kafka']['events_per_s']:.0%}")
    print(f"as built / raw end to end: {batched / results['raw_e2e']['events_per_s']:.0%}")
    print(
        f"raw end to end / raw SQL:  "
        f"{results['raw_e2e']['events_per_s'] / results['raw_sql']['events_per_s']:.0%}"
    )
    contract = results["raw_e2e_reads"]["events_per_s"]
    print(f"as built / the same + the contract's reads: {batched / contract:.0%}")
    print(f"the same + reads / raw SQL: {contract / results['raw_sql']['events_per_s']:.0%}")
    print(
        f"ledger check: {results['ledger_check']}; "
        f"per-event ledger check: {results['per_event']['ledger_check']}"
    )


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    phases = results["latency"]
    offered = [p["offered"] for p in phases]
    figure, axes = pyplot.subplots(figsize=(7, 5.4), dpi=120)
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("p999_ms", "p99.9")):
        axes.plot(offered, [p[key] for p in phases], marker="o", label=label)
    if floors := results.get("floor_latency"):
        axes.plot(
            offered, [p["p99_ms"] for p in floors], marker="x", linestyle=":", color="black",
            label="p99 of the floor (none of the worker's code)",
        )  # fmt: skip
    if own := results.get("floor_latency_own"):
        axes.plot(
            [p["offered"] for p in own], [p["p99_ms"] for p in own], marker="+", linestyle=":",
            color="grey", label="p99 of the floor at the same shares of its own maximum",
        )  # fmt: skip
    for key, marker, label in (
        ("latency_beside", "s", "p99 at the same shares of the worker's maximum fed as it runs"),
        ("floor_latency_beside", "d", "p99 of the floor, the same of its maximum fed"),
    ):
        if fed := results.get(key):
            axes.plot(
                [p["offered"] for p in fed], [p["p99_ms"] for p in fed], marker=marker,
                linestyle="--", label=label,
            )  # fmt: skip
    axes.axhline(50, color="grey", linestyle="--", linewidth=0.8, label="50 ms target (p99 at 50%)")
    axes.axhline(
        100, color="grey", linestyle="-.", linewidth=0.8, label="100 ms target (p99 at 80%)"
    )
    axes.set_xlabel("offered load (events/s, open loop)")
    axes.set_ylabel("production to result published (ms)")
    axes.set_yscale("log")
    axes.set_title(
        f"payment-worker latency (max measured {results['batched']['events_per_s']:,.0f} events/s)"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small")
    figure.tight_layout()
    figure.savefig(path, bbox_inches="tight")  # the legend below the axes, whole
    say(f"plot written to {path}")


def parse(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events", type=int, default=200_000, help="events in the main run (default 200,000)"
    )
    parser.add_argument("--students", type=int, default=40_000, help="students (default 40,000)")
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="worker processes (WORKER_PROCESSES, one group) for the scale-out run beside the "
        "as-built one (default 2; 1 skips it)",
    )
    parser.add_argument(
        "--peer-events",
        type=int,
        default=20_000,
        help="course completions for the FastStream peers and the worker beside them "
        "(default 20,000; 0 skips the peers)",
    )
    parser.add_argument(
        "--mix",
        choices=sorted(MIXES),
        default="mixed",
        help="the workload: mixed (coins and payments, bench/workload.py) or courses "
        "(course completions only); default mixed",
    )
    parser.add_argument(
        "--per-event-sample",
        type=int,
        default=10_000,
        help="events for the one-per-transaction run (default 10,000)",
    )
    parser.add_argument(
        "--loads",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.25, 0.5, 0.8],
        help="latency loads as fractions of the measured maximum (default 0.25,0.5,0.8)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=15.0,
        help="seconds of production per load (default 15)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the workers (repeatable), e.g. WORKER_BATCH_MAX_RECORDS=1000",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="where results, plot and worker logs go (default bench/results)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and topics")
    return parser.parse_args(list(argv) if argv is not None else None)


if __name__ == "__main__":
    # A new topic's partitions take a moment to get leaders; the producer retries meanwhile.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    sys.exit(asyncio.run(main(parse())))
