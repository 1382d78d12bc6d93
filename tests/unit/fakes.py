"""In-memory stand-ins for aiokafka's consumer and producer and for the outbox table.

Each records what was done to it, so a test asserts behaviour (which offsets were committed,
what the broker took, which producer sent it) rather than calls. They copy the few rules of the
real thing the worker relies on, and no more: see each class.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    MessageSizeTooLargeError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    UnknownTopicOrPartitionError,
)
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from worker.core.messages import OutgoingMessage
from worker.db.outbox import Backlog, QueuedMessage, encode_headers

Record = ConsumerRecord[bytes, bytes]


class FakeConsumer:
    """A group member over in-memory partitions.

    As aiokafka's: `getmany` reads from each partition's position (nothing from one not
    assigned); `commit` refuses a partition not assigned (IllegalStateError); `rebalance`
    revokes everything through the listener, then assigns, each partition starting at its
    committed offset. A record marked unreadable makes
    `getmany` raise as aiokafka's parser does, dropping what it took of other partitions although
    their positions moved on; the failing partition's position stays.
    """

    def __init__(self) -> None:
        self.log: dict[TopicPartition, list[Record]] = {}
        self.unreadable: set[tuple[TopicPartition, int]] = set()
        self.positions: dict[TopicPartition, int] = {}
        self.committed_offsets: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.owned: set[TopicPartition] = set()
        self.topics: list[str] = []
        self.listener: ConsumerRebalanceListener | None = None
        self.refuse_commits: Exception | None = None
        self.partitions_of: dict[str, int] = {}  # partition counts by topic, when known
        self.max_per_fetch = 500  # records one getmany returns at most
        self.fetches: list[tuple[TopicPartition, ...]] = []  # each getmany's partitions
        self._coordinator = SimpleNamespace(coordinator_id=1)  # a known group coordinator
        self._clock = 0

    def append(self, tp: TopicPartition, value: bytes, *, timestamp: int | None = None) -> Record:
        """Put a record at the end of `tp` (timestamps rise in append order unless given)."""
        self._clock += 1
        records = self.log.setdefault(tp, [])
        record: Record = ConsumerRecord(
            tp.topic, tp.partition, len(records), self._clock if timestamp is None else timestamp,
            0, b"key", value, None, 3, len(value), [],
        )  # fmt: skip
        records.append(record)
        return record

    def append_unreadable(self, tp: TopicPartition) -> int:
        offset = self.append(tp, b"<cannot be parsed>").offset
        self.unreadable.add((tp, offset))
        return offset

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None:
        self.topics, self.listener = topics, listener

    async def rebalance(self, assigned: Iterable[TopicPartition]) -> None:
        assert self.listener is not None
        await self.listener.on_partitions_revoked(set(self.owned))
        self.owned = set(assigned)
        self.positions = {tp: self.committed_offsets.get(tp, 0) for tp in self.owned}
        await self.listener.on_partitions_assigned(set(self.owned))

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        count = self.partitions_of.get(topic)
        return None if count is None else set(range(count))

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Record]]:
        await asyncio.sleep(0)  # a fetch yields to the event loop
        room = min(max_records or 500, self.max_per_fetch)
        batch: dict[TopicPartition, list[Record]] = {}
        unparsable = False
        self.fetches.append(partitions)
        for tp in sorted(partitions or self.owned):
            if tp not in self.owned:
                continue  # as aiokafka's: a partition not assigned gives nothing
            taken = self.log.get(tp, [])[self.positions[tp] :][:room]
            if any((tp, record.offset) in self.unreadable for record in taken):
                unparsable = True  # its position stays
            elif taken:
                batch[tp] = taken
                self.positions[tp] = taken[-1].offset + 1
                room -= len(taken)
        if unparsable:  # what was taken is dropped, positions moved on
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
        if not batch:  # a real fetch waits up to `timeout_ms` for records
            await asyncio.sleep(min(timeout_ms, 10) / 1000)
        return batch

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp in offsets:
            if tp not in self.owned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        if self.refuse_commits is not None:
            raise self.refuse_commits
        self.commits.append(dict(offsets))
        self.committed_offsets.update(offsets)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.committed_offsets.get(tp)

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[Any, int]:
        return {tp: 0 for tp in partitions}

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[Any, int]:
        return {tp: len(self.log.get(tp, [])) for tp in partitions}

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = 0


@dataclass(frozen=True)
class Sent:
    """A message the broker took, which of the broker's producers sent it, to which partition,
    and the CreateTime it was given (None: the producer's clock; not compared)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    producer: int
    partition: int = 0
    timestamp: int | None = field(default=None, compare=False)
    via: str = field(default="batch", compare=False)  # `send` or a producer batch


class FakeBroker:
    """Makes the relay's producers (`broker.new_producer`) and keeps what they published.

    `refuses` maps a value to the error the broker answers it with, every time. A value in
    `too_large` is refused by `send` itself (MessageSizeTooLargeError), before the broker sees
    it, which breaks nothing. A value in `refuses_once` is refused so the first time only, as a
    passing fault would be (it breaks no sequence).

    Sequences are kept per partition, as Kafka's broker keeps them for an idempotent producer:
    once a producer's delivery to a partition where the broker already took some of its
    messages is refused, every later one of that producer to that partition fails with
    OutOfOrderSequenceNumber. A partition where it took none holds no sequence yet, so the
    broker takes whatever comes next, refusal or not. (`broken` breaks the producer everywhere:
    it was fenced, say.)

    A producer batch (`create_batch`, `send_batch`) is taken or refused whole: one refused
    value refuses its batch. `too_large` is the producer's own size check, which only `send`
    makes: a batch takes such a value (as a broker allowing larger messages would).
    `partitions` is each topic's partition count; `send` chooses among them as aiokafka's
    default partitioner does. A topic in `missing` does not exist: asked for its partitions,
    a producer raises UnknownTopicOrPartitionError, as aiokafka's does once its metadata wait
    ends, also when no broker answered it (`unreachable`: the client's `fetch_all_metadata`
    raises then, as aiokafka's does).
    """

    def __init__(
        self,
        refuses: Mapping[bytes, Exception] | None = None,
        too_large: Iterable[bytes] = (),
        refuses_once: Mapping[bytes, Exception] | None = None,
        batch_size: int = 3,
        partitions: int = 1,
        unencodable: Iterable[bytes] = (),
        missing: Iterable[str] = (),
    ) -> None:
        self.missing = set(missing)
        self.unreachable = False
        # Values the client cannot encode: `send` and a batch's `append` raise ValueError.
        self.unencodable = set(unencodable)
        # How many messages one producer batch holds (the worker's hold up to 256 KiB).
        self.batch_size = batch_size
        self.partitions = partitions
        self.refuses = dict(refuses or {})
        self.refuses_once = dict(refuses_once or {})
        self.too_large = set(too_large)
        self.taken: list[Sent] = []
        self.producers: list[FakeProducer] = []

    def new_producer(self) -> FakeProducer:
        self.producers.append(FakeProducer(self, len(self.producers)))
        return self.producers[-1]


@dataclass
class FakeClient:
    """The producer's client, as far as `Sender` asks it: the cluster's topics."""

    broker: FakeBroker

    async def fetch_all_metadata(self) -> FakeClient:
        if self.broker.unreachable:
            raise KafkaError("Unable to get cluster metadata over all known brokers")
        return self

    def topics(self, exclude_internal_topics: bool = True) -> set[str]:
        return {"some.other.topic"}  # any the test asks for, but the missing ones


@dataclass
class FakeProducer:
    broker: FakeBroker
    number: int
    started: bool = False
    stopped: bool = False
    broken: bool = False
    # Partitions where the broker took a message of this producer, and where a refusal
    # broke its sequence since.
    sequenced: set[tuple[str, int]] = field(default_factory=set)
    out_of_order: set[tuple[str, int]] = field(default_factory=set)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    @property
    def client(self) -> FakeClient:
        return FakeClient(self.broker)

    async def partitions_for(self, topic: str) -> set[int]:
        if topic in self.broker.missing or self.broker.unreachable:
            raise UnknownTopicOrPartitionError()
        return set(range(self.broker.partitions))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.broker.batch_size, self.broker.unencodable)

    async def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: list[Any],
        timestamp_ms: int | None = None,
    ) -> asyncio.Future[None]:
        await asyncio.sleep(0)  # handing over yields to the event loop, as aiokafka's may
        if not self.started or self.stopped:
            raise ProducerClosed()
        if value in self.broker.too_large:
            raise MessageSizeTooLargeError()
        if value in self.broker.unencodable:
            raise ValueError("cannot encode")
        every = list(range(self.broker.partitions))
        partition = 0 if key is None else DefaultPartitioner()(key, every, every)
        return self._deliver(topic, partition, [(key, value, headers, timestamp_ms)], "send")

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        await asyncio.sleep(0)
        if not self.started or self.stopped:
            raise ProducerClosed()
        return self._deliver(topic, partition, batch.messages)

    def _deliver(
        self, topic: str, partition: int, messages: list[tuple[Any, ...]], via: str = "batch"
    ) -> asyncio.Future[None]:
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        where = (topic, partition)
        values = [value for _, value, _, _ in messages]
        refused = next((v for v in values if v in self.broker.refuses), None)
        once = next((v for v in values if v in self.broker.refuses_once), None)
        if self.broken or where in self.out_of_order:
            delivery.set_exception(OutOfOrderSequenceNumber())
        elif refused is not None:
            if where in self.sequenced:
                self.out_of_order.add(where)
            delivery.set_exception(self.broker.refuses[refused])
        elif once is not None:
            # A batch that expired unanswered: nothing was written, but it had its sequence
            # numbers, so where the broker holds this producer's sequence there is now a gap.
            if where in self.sequenced:
                self.out_of_order.add(where)
            delivery.set_exception(self.broker.refuses_once.pop(once))
        else:
            self.sequenced.add(where)
            for key, value, headers, timestamp in messages:
                self.broker.taken.append(
                    Sent(topic, key, value, headers, self.number, partition, timestamp, via)
                )
            delivery.set_result(None)
        return delivery


@dataclass
class FakeBatch:
    """A producer batch: takes messages until it holds `size` (an empty one takes any)."""

    size: int
    unencodable: set[bytes] = field(default_factory=set)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    closed: bool = False

    def append(
        self, *, key: bytes | None, value: bytes | None, timestamp: int | None, headers: list[Any]
    ) -> object | None:
        if value in self.unencodable:
            raise ValueError("cannot encode")
        if self.closed or len(self.messages) >= self.size:
            return None
        self.messages.append((key, value, headers, timestamp))
        return object()

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeChunk:
    messages: list[QueuedMessage]
    forgotten: list[int] = field(default_factory=list)
    parked: dict[int, Exception] = field(default_factory=dict)

    async def forget(self, seqs: Sequence[int]) -> None:
        self.forgotten += seqs

    async def park(self, refused: Mapping[int, Exception]) -> None:
        self.parked.update(refused)


class FakeOutbox:
    """The outbox table in memory (`worker.db.outbox.Outbox`): what a claim forgets or parks
    is applied only if its block ends without an error, as its transaction would commit."""

    def __init__(self, messages: Iterable[OutgoingMessage] = ()) -> None:
        self.queued: list[QueuedMessage] = []
        self.parked: dict[int, Exception] = {}
        self.busy_claims = 0  # how many claims to come find another relay publishing
        self.claims = 0  # how many claims were made
        for message in messages:
            self.enqueue(message)

    def enqueue(self, message: OutgoingMessage) -> None:
        seq = max([m.seq for m in self.queued] + list(self.parked) + [0]) + 1
        self.queued.append(
            QueuedMessage(
                seq, message.topic, message.key, message.value, encode_headers(message.headers)
            )
        )

    @contextlib.asynccontextmanager
    async def claim(self, limit: int) -> AsyncIterator[FakeChunk | None]:
        self.claims += 1
        if self.busy_claims:
            self.busy_claims -= 1
            yield None
            return
        chunk = FakeChunk(self.queued[:limit])
        yield chunk
        gone = {*chunk.forgotten, *chunk.parked}
        self.queued = [m for m in self.queued if m.seq not in gone]
        self.parked.update(chunk.parked)

    async def backlog(self) -> Backlog:
        return Backlog(len(self.queued), len(self.parked), 0.0)
