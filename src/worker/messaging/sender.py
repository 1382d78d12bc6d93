"""Sending messages in order with the idempotent producer, and finding the ones refused alone.

Both publishers use it: the consume loop's, which sends a committed batch's results straight
from memory (`worker.messaging.publish`), and the outbox relay (`worker.messaging.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import OutOfOrderSequenceNumber, UnknownTopicOrPartitionError
from aiokafka.partitioner import murmur2

from worker.core.messages import OutgoingMessage
from worker.errors import is_retriable
from worker.messaging.clients import start_with_retry
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class Sender:
    """Sends messages in order and waits for every acknowledgement.

    Topics are event types; the sender adds the deployment's topic prefix. The broker refuses a
    whole producer batch, and where it holds the idempotent producer's sequence, the batches
    behind it fail too: so every message that was not taken, and every one after it on its
    partition, is sent again on its own, in order, with a new producer, and only one refused
    alone is reported as refused. Where the broker holds no sequence of the producer yet, only
    one batch per partition is in flight until the broker takes one (`_send_together`).
    """

    def __init__(
        self,
        new_producer: Callable[[], AIOKafkaProducer],
        *,
        topic_prefix: str = "",
        topics: Sequence[str] = (),
    ) -> None:
        self._new_producer = new_producer
        self._producer: AIOKafkaProducer | None = None
        self._topic_prefix = topic_prefix
        self._topics = topics
        # (topic, partition) -> when the broker last took a message of this producer there.
        self._sequenced: dict[tuple[str, int], float] = {}

    async def start(self) -> None:
        """Start the idempotent producer, waiting for the broker, and learn where `topics` live
        (the first start only): else the first batch to each topic would wait for its
        metadata, one topic after another, and every batch behind it with it."""
        first = self._producer is None
        self._producer = self._new_producer()
        self._sequenced.clear()  # a new producer: the broker holds no sequence of it yet
        await start_with_retry(self._producer, "producer")
        if first and self._topics:
            producer = self._producer
            async for attempt in transient_retry():
                with attempt:
                    await asyncio.gather(
                        *(producer.partitions_for(self._topic_prefix + t) for t in self._topics)
                    )

    async def close(self) -> None:
        """Stop the producer; a failure to stop is ignored, a cancellation is not."""
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()

    async def send(self, messages: Sequence[OutgoingMessage]) -> dict[int, Exception]:
        """Send `messages` in order; returns those refused even alone, by position, with why.
        A passing fault is raised: the caller sends them all again, in order (the producer is
        idempotent and a result's id is deterministic, so a repeat is harmless).

        Every message of one call carries the same CreateTime, sent alone or not, so
        timestamps never run backwards in decision order, across topics too."""
        timestamp_ms = int(time.time() * 1000)
        nowhere: dict[int, Exception] = {}
        again = await self._send_together(messages, timestamp_ms, nowhere)
        return {**nowhere, **await self._send_alone(messages, again, timestamp_ms)}

    async def _send_together(
        self, messages: Sequence[OutgoingMessage], timestamp_ms: int, nowhere: dict[int, Exception]
    ) -> list[int]:
        """Each partition's messages in order, in as few producer batches as hold them: one
        delivery to wait for per batch, not per message. Returns the positions to send again,
        alone and in order: every message refused, and every one after it on its partition.

        A batch the broker refuses refuses every message in it. Where the broker already holds
        this producer's sequence for the partition, every batch behind a refused one fails
        too. Where it holds none (a new producer, or one long idle there), it would take the
        batches behind a refused one, ahead of the refused messages sent again: so there the
        first batch goes alone, and the rest only once the broker has taken it. A large or
        keyless message goes by `send`, in its place: the producer's size limit still judges
        it, and its partitioner picks among the partitions that have a leader. A message for a
        topic the cluster does not have is left out, refused (`_by_partition`).
        """
        again: set[int] = set()
        deliveries: list[tuple[list[int], asyncio.Future[Any]]] = []
        groups = await self._by_partition(messages, nowhere)
        handing = [
            asyncio.ensure_future(
                self._hand_over(messages, where, positions, timestamp_ms, again, deliveries)
            )
            for where, positions in groups.items()
        ]
        try:
            await asyncio.gather(*handing)
        except BaseException:
            for task in handing:  # a passing fault: the caller sends them all again
                task.cancel()
            raise
        outcomes = await asyncio.gather(*(d for _, d in deliveries), return_exceptions=True)
        for (positions, _), outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _raise_if_passing(outcome)
                _say_refused(self._topic_prefix + messages[positions[0]].topic, positions, outcome)
                again.update(positions)
            elif isinstance(outcome, BaseException):
                raise outcome
        now = time.monotonic()
        for (topic, partition), positions in groups.items():
            first = next((n for n, position in enumerate(positions) if position in again), None)
            if first is not None:  # those after a refused one follow it again
                again.update(positions[first:])
            elif partition is not None:
                self._sequenced[topic, partition] = now
        return sorted(again)

    async def _hand_over(
        self,
        messages: Sequence[OutgoingMessage],
        where: tuple[str, int | None],
        positions: list[int],
        timestamp_ms: int,
        again: set[int],
        deliveries: list[tuple[list[int], asyncio.Future[Any]]],
    ) -> None:
        """Hand one partition's messages to the producer, in order (`_send_together`)."""
        producer = self._started()
        topic, partition = where
        # Whether the broker holds this producer's sequence here: else the first unit goes
        # alone, and nothing follows until the broker took it.
        held = partition is None or self._holds_sequence(topic, partition)

        async def submit(taken: list[int], sending: Awaitable[asyncio.Future[Any]]) -> bool:
            """False if the producer or the broker refused `taken`: then it and every one after
            it on the partition go again, and nothing more is handed over."""
            nonlocal held
            try:
                delivery = await sending
                if not held:
                    await asyncio.shield(delivery)  # the producer's own future: never cancel it
                    held = True
            except Exception as exc:  # noqa: BLE001 - a permanent refusal is sent alone next
                _raise_if_passing(exc)
                _say_refused(topic, taken, exc)
                again.update(positions[positions.index(taken[0]) :])
                return False
            deliveries.append((taken, delivery))
            return True

        def handed(batch: Any) -> Awaitable[asyncio.Future[Any]]:
            # Closed first: a message given to `send` next never joins it, so a refusal of that
            # message never takes this batch's with it. (A closed batch also goes without
            # waiting for the producer's linger.)
            batch.close()
            sending: Awaitable[asyncio.Future[Any]] = producer.send_batch(
                batch, topic, partition=partition
            )
            return sending

        batch = producer.create_batch()
        taken: list[int] = []
        for n, position in enumerate(positions):
            message = messages[position]
            if partition is None or _size(message) > _BATCHED_UP_TO:
                if taken and not await submit(  # the batch before it goes first
                    taken, handed(batch)
                ):
                    return
                batch, taken = producer.create_batch(), []
                sending = producer.send(**self._arguments(message, timestamp_ms))
                if not await submit([position], sending):
                    return
                continue
            if not _append(batch, message, timestamp_ms):  # full: it goes, a new one starts
                if taken and not await submit(taken, handed(batch)):
                    return
                batch, taken = producer.create_batch(), []
                # An empty batch takes any message it can encode: one it cannot goes alone.
                if not _append(batch, message, timestamp_ms):
                    again.update(positions[n:])
                    return
            taken.append(position)
        if taken:
            await submit(taken, handed(batch))

    def _holds_sequence(self, topic: str, partition: int) -> bool:
        """Whether the broker took a message of this producer on the partition lately enough
        to hold its sequence still (it forgets an idle producer after
        `producer.id.expiration.ms`, a day by default; this assumes far less)."""
        last = self._sequenced.get((topic, partition))
        return last is not None and time.monotonic() - last < _SEQUENCE_HELD_SECONDS

    async def _by_partition(
        self, messages: Sequence[OutgoingMessage], nowhere: dict[int, Exception]
    ) -> dict[tuple[str, int | None], list[int]]:
        """The messages' positions by the partition `send` would choose for each: the default
        partitioner's, murmur2 of the key as Kafka's Java clients hash it. Keyless messages
        are grouped under None: `send` places them.

        A message for a topic the cluster does not have (once the producer has waited for its
        metadata) goes into `nowhere`, refused, unless the topic is one of this sender's own
        `topics`: a re-driven message of a topic since deleted, or of a type this version no
        longer publishes, is parked instead of holding back every message behind it for ever.
        One of its own topics missing is the deployment's fault: that waits for the operator,
        as a passing fault. (A sender given no `topics` owns none.)"""
        producer = self._started()
        partitions: dict[str, list[int] | Exception] = {}
        grouped: dict[tuple[str, int | None], list[int]] = {}
        for position, message in enumerate(messages):
            topic = self._topic_prefix + message.topic
            if (known := partitions.get(topic)) is None:
                # The producer's own order of the partitions, as `send` hands them over.
                known = partitions[topic] = await self._partitions(producer, message.topic)
            if isinstance(known, Exception):
                nowhere[position] = known
                continue
            partition = None if message.key is None else known[_hash_of(message.key) % len(known)]
            grouped.setdefault((topic, partition), []).append(position)
        return grouped

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int] | Exception:
        """The partitions of `topic` (an event type), or why it has none to send to."""
        name = self._topic_prefix + topic
        try:
            found: list[int] = list(await producer.partitions_for(name))
        except UnknownTopicOrPartitionError:
            # aiokafka says the same when no broker answered for its whole metadata wait: only
            # the word of a broker that answers refuses the message.
            if topic in self._topics or not await _cluster_lacks(producer, name):
                raise
            missing: Exception = UnknownTopicOrPartitionError(f"topic {name} does not exist")
            return missing
        return found

    async def _send_alone(
        self, messages: Sequence[OutgoingMessage], positions: Sequence[int], timestamp_ms: int
    ) -> dict[int, Exception]:
        """Send each message at `positions` on its own, in order, with a new producer after
        any refusal (a refused batch breaks the idempotent producer's sequence)."""
        if not positions:
            return {}
        refused: dict[int, Exception] = {}
        await self._replace_producer()
        for position in positions:
            try:
                arguments = self._arguments(messages[position], timestamp_ms)
                await (await self._started().send(**arguments))
            except Exception as exc:  # noqa: BLE001 - refused alone: the caller parks it
                _raise_if_passing(exc)
                refused[position] = exc
                await self._replace_producer()
        return refused

    async def _replace_producer(self) -> None:
        log.warning("replacing the producer", extra={"action": "producer_reset"})
        await self.close()
        await self.start()

    def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the producer is not started")
        return self._producer

    def _arguments(self, message: OutgoingMessage, timestamp_ms: int) -> dict[str, Any]:
        return {
            "topic": self._topic_prefix + message.topic,
            "value": message.value,
            "key": message.key,
            "headers": list(message.headers),
            "timestamp_ms": timestamp_ms,
        }


# Larger messages (key, value and headers) go by `send`, whose size check (`max_request_size`)
# a batch skips. A batch holds up to PRODUCER_BATCH_BYTES of the smaller ones.
_BATCHED_UP_TO = 8_192
# How long the broker is assumed to keep a producer's sequence for a partition it does not
# write to (Kafka's `producer.id.expiration.ms` is a day by default).
_SEQUENCE_HELD_SECONDS = 600.0


def _say_refused(topic: str, positions: Sequence[int], error: Exception) -> None:
    """Messages handed over together were not taken, for good: they, and those after them on
    the partition, go again one at a time (a topic's `max.message.bytes` below a batch refuses
    every one). Behind a refused batch, those the producer had already sent fail out of
    sequence: they are said at INFO, the refusal that caused it at WARNING."""
    after_a_refusal = isinstance(error, OutOfOrderSequenceNumber)
    log.log(
        logging.INFO if after_a_refusal else logging.WARNING,
        "%d messages to %s were not taken (%s: %s); they go again one at a time",
        len(positions), topic, type(error).__name__, error,
        extra={"action": "batch_refused", "topic": topic, "error": type(error).__name__},
    )  # fmt: skip


def _hash_of(key: bytes) -> int:
    """The key's hash as the partitioner aiokafka's producer uses when it is given none (as
    `make_producer` gives it) takes it: murmur2, its sign bit cleared; the partition is this
    modulo the topic's partition count, in the producer's order of them."""
    if len(key) > _CACHED_UP_TO:  # a dead letter's key, which any producer chose
        return int(murmur2(key) & 0x7FFFFFFF)
    return _hashed(key)


@functools.lru_cache(maxsize=1 << 15)
def _hashed(key: bytes) -> int:
    """`_hash_of`, kept for the last 32,768 short keys: murmur2 is pure Python, 2.7 µs a key,
    and one student's results come again and again (8 MB when full of 15-byte keys, about 10
    MB at most)."""
    return int(murmur2(key) & 0x7FFFFFFF)


# The longest key whose hash is kept: a result's key is a student id (a UUID's text is 36 bytes).
_CACHED_UP_TO = 64


async def _cluster_lacks(producer: AIOKafkaProducer, topic: str) -> bool:
    """Whether a broker that answers now says the cluster has no topic `topic` (a cluster no
    broker of which answers says nothing)."""
    try:
        metadata = await producer.client.fetch_all_metadata()
    except Exception:  # noqa: BLE001 - no broker answered: no verdict, the caller waits
        return False
    return topic not in metadata.topics(exclude_internal_topics=False)


def _size(message: OutgoingMessage) -> int:
    headers = sum(len(name) + len(value or b"") for name, value in message.headers)
    return len(message.value or b"") + len(message.key or b"") + headers


def _append(batch: Any, message: OutgoingMessage, timestamp_ms: int) -> bool:
    """Whether `batch` took `message`: False when it is full, or cannot take it at all (the
    message then goes by `send`, whose refusal parks it)."""
    try:
        taken = batch.append(
            key=message.key,
            value=message.value,
            timestamp=timestamp_ms,
            headers=list(message.headers),
        )
    except Exception:  # noqa: BLE001 - e.g. a header name that is not text: `send` judges it
        return False
    return taken is not None


def _raise_if_passing(error: Exception) -> None:
    """A passing fault is the whole send's: the caller sends everything again later. (A producer
    whose sequence broke, aiokafka's OutOfOrderSequenceNumber, is not one: what it did not send
    goes out alone, with a new producer.)"""
    if is_retriable(error):
        raise error
