"""The dead-letter topic read from its start to its end, and chosen letters replayed to their
source partitions (`payment-worker dlq`). Neither joins the worker's group nor commits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaError,
    TopicAuthorizationFailedError,
)

from worker.core import dead_letters
from worker.core.dead_letters import Coordinates, DeadLetter, Replay
from worker.core.messages import MAX_MESSAGE_BYTES
from worker.core.topics import DLQ_TOPIC
from worker.errors import one_line
from worker.messaging.clients import connection, partitions_of
from worker.settings import Settings

# How long a command waits for the broker to answer at all, and for a read to move on.
CONNECT_SECONDS = 15.0
STALL_SECONDS = 30.0
# Replayed messages in flight at once: enough to fill batches, few enough to stop soon on error.
_IN_FLIGHT = 500

Progress = Callable[[int, int], None]  # (done, total)


class DlqError(Exception):
    """The broker did not answer, refused, or has no dead-letter topic: one line says which."""


async def read_all(settings: Settings, progress: Progress) -> AsyncIterator[DeadLetter]:
    """Every dead letter there is when the call starts, in each partition's order. Raises
    DlqError when the broker does not answer, refuses, or stops moving for STALL_SECONDS."""
    topic = settings.kafka_topic_prefix + DLQ_TOPIC
    brokers = settings.kafka_bootstrap_servers
    consumer = AIOKafkaConsumer(
        **connection(settings),
        client_id="payment-worker-dlq",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
        # Retention deleting the oldest letters mid-read moves on to the oldest kept, never to
        # the end (which would pass over every letter left).
        auto_offset_reset="earliest",
    )
    try:
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                partitions, starts, ends = await _open(consumer, settings, topic)
        except TimeoutError as exc:
            raise DlqError(
                f"the broker at {brokers} did not answer in {CONNECT_SECONDS:g} s"
            ) from exc
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        left = {tp for tp in partitions if ends[tp] > starts[tp]}
        done = 0
        clock = asyncio.get_running_loop().time
        reached = dict(starts)
        waited = 0.0  # time spent asking the broker since a position last moved
        while left:
            asked = clock()
            batch, positions = await _round(consumer, left)
            moved = any(positions.get(tp, reached[tp]) > reached[tp] for tp in left)
            waited = 0.0 if moved else waited + clock() - asked
            if waited >= STALL_SECONDS:
                raise DlqError(
                    f"reading {topic} stalled for {STALL_SECONDS:g} s after {done} of about "
                    f"{total} letters: is the broker at {brokers} up?"
                )
            for tp, position in positions.items():  # never backwards: no letter read twice
                reached[tp] = max(reached[tp], position)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    done += 1
                    yield dead_letters.read(
                        Coordinates(tp.topic, tp.partition, record.offset),
                        record.key,
                        record.value,
                        tuple(record.headers),
                    )
            # A transaction's markers and compacted gaps leave no record at the end: the
            # position says when a partition is read through.
            left = {tp for tp in left if reached[tp] < ends[tp]}
            progress(done, total)
    except (KafkaError, OSError) as exc:
        raise DlqError(f"the broker at {brokers}, reading {topic}: {one_line(exc)}") from exc
    finally:
        await consumer.stop()


async def _round(
    consumer: AIOKafkaConsumer, partitions: set[TopicPartition]
) -> tuple[dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], dict[TopicPartition, int]]:
    """One fetch, and where each partition stands after it; each step bounded, so a broker gone
    (a position being reset never returns) is a round with no progress, never a hang."""
    batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    positions: dict[TopicPartition, int] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STALL_SECONDS):
            batch = await consumer.getmany(*partitions, timeout_ms=1000)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STALL_SECONDS):
            for tp in partitions:
                positions[tp] = await consumer.position(tp)
    for tp, records in batch.items():  # what was fetched counts, whatever position said
        if records:
            positions[tp] = max(positions.get(tp, 0), records[-1].offset + 1)
    return batch, positions


async def _open(
    consumer: AIOKafkaConsumer, settings: Settings, topic: str
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The dead-letter topic's partitions, assigned from their start; and their offsets."""
    found = await partitions_of(settings, [topic])
    if topic not in found:
        raise DlqError(
            f"there is no topic {topic}: no worker has started on this cluster with this "
            "KAFKA_TOPIC_PREFIX (or this principal may not describe it)"
        )
    partitions = [TopicPartition(topic, p) for p in found[topic]]
    await consumer.start()
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return (
        partitions,
        await consumer.beginning_offsets(partitions),
        await consumer.end_offsets(partitions),
    )


async def replay(
    settings: Settings, replays: Sequence[Replay], sent: Callable[[Sequence[Replay]], None]
) -> None:
    """Send each replay to its source partition, acknowledged by all replicas, in order per
    partition, in chunks of up to _IN_FLIGHT, calling `sent` with each chunk's acknowledged
    replays. Stops at the first refusal (DlqError): what was acknowledged has been passed to
    `sent`, and no later chunk is sent. Within the refused chunk, letters after the refused one
    may have been acknowledged (and said): a second run sends the refused one after them."""
    if not replays:
        return
    brokers = settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(
        **connection(settings),
        client_id="payment-worker-dlq",
        enable_idempotence=True,
        acks="all",
        max_request_size=MAX_MESSAGE_BYTES,
    )
    try:
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                await producer.start()
        except TimeoutError as exc:
            raise DlqError(
                f"the broker at {brokers} did not answer in {CONNECT_SECONDS:g} s"
            ) from exc
        except (KafkaError, OSError) as exc:
            raise DlqError(f"the broker at {brokers}: {_refused(exc)}") from exc
        for start in range(0, len(replays), _IN_FLIGHT):
            acknowledged, refused = await _send(producer, replays[start : start + _IN_FLIGHT])
            sent(acknowledged)  # outside any handler: the caller's own errors stay its own
            if refused is not None:
                raise DlqError(f"the broker at {brokers}: {_refused(refused)}") from refused
    finally:
        await producer.stop()


async def _send(
    producer: AIOKafkaProducer, chunk: Sequence[Replay]
) -> tuple[list[Replay], BaseException | None]:
    """Send `chunk` and wait for every answer: the acknowledged replays, and the first refusal.
    A send that fails stops the chunk there; those queued before it are waited for."""
    futures: list[asyncio.Future[object]] = []
    refused: BaseException | None = None
    for r in chunk:
        try:
            futures.append(
                await producer.send(
                    r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers)
                )
            )
        except Exception as exc:  # noqa: BLE001 - said as the refusal, after the answers
            refused = exc
            break
    answers = await asyncio.gather(*futures, return_exceptions=True)
    acknowledged = [
        r
        for r, answer in zip(chunk, answers, strict=False)
        if not isinstance(answer, BaseException)
    ]
    # Any answer that is not an acknowledgement (a cancelled one too) is a refusal.
    first = next((a for a in answers if isinstance(a, BaseException)), None)
    return acknowledged, first or refused


def _refused(error: BaseException) -> str:
    if isinstance(error, TopicAuthorizationFailedError | ClusterAuthorizationFailedError):
        # The idempotent producer's id needs Write on some topic: a principal with none is
        # refused at the cluster before any topic is named.
        return (
            f"not authorized to write the source topic ({one_line(error)}): replay as a principal "
            "with Write on it (payment-worker kafka-acls --replayer ...)"
        )
    return one_line(error)
