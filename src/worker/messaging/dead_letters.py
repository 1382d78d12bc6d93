"""The dead-letter topic read from its start to its end, and chosen letters replayed to their
source partitions (`payment-worker dlq`). Neither joins the worker's group nor commits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from worker.core import dead_letters
from worker.core.dead_letters import Coordinates, DeadLetter, Replay
from worker.core.messages import MAX_MESSAGE_BYTES
from worker.core.topics import DLQ_TOPIC
from worker.messaging.clients import connection, partitions_of
from worker.settings import Settings

# How long a command waits for the broker to answer at all, and for a read to move on.
CONNECT_SECONDS = 15.0
STALL_SECONDS = 30.0
# Replayed messages in flight at once: enough to fill batches, few enough to stop soon on error.
_IN_FLIGHT = 500

Progress = Callable[[int, int], None]  # (done, total)


class BrokerUnavailable(Exception):
    """The broker did not answer, or the dead-letter topic is not there: one line says which."""


async def read_all(settings: Settings, progress: Progress) -> AsyncIterator[DeadLetter]:
    """Every dead letter there is when the call starts, in each partition's order."""
    topic = settings.kafka_topic_prefix + DLQ_TOPIC
    consumer = AIOKafkaConsumer(
        **connection(settings),
        client_id="payment-worker-dlq",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_bytes=4 * MAX_MESSAGE_BYTES,
    )
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            partitions, starts, ends = await _open(consumer, settings, topic)
    except BaseException as exc:
        await consumer.stop()
        if isinstance(exc, TimeoutError):
            raise BrokerUnavailable(
                f"the broker at {settings.kafka_bootstrap_servers} did not answer in "
                f"{CONNECT_SECONDS:g} s"
            ) from exc
        if isinstance(exc, Exception) and not isinstance(exc, BrokerUnavailable):
            raise BrokerUnavailable(
                f"the broker at {settings.kafka_bootstrap_servers}: {exc!r}"
            ) from exc
        raise
    total = sum(ends[tp] - starts[tp] for tp in partitions)
    left = {tp for tp in partitions if ends[tp] > starts[tp]}
    done = 0
    clock = asyncio.get_running_loop().time
    moved_at = clock()
    try:
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        break
                    done += 1
                    moved_at = clock()
                    yield dead_letters.read(
                        Coordinates(tp.topic, tp.partition, record.offset),
                        record.key,
                        record.value,
                        tuple(record.headers),
                    )
            # A transaction's markers and compacted gaps leave no record at the end: the
            # position says when a partition is read through.
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
            progress(done, total)
            if left and clock() - moved_at > STALL_SECONDS:
                raise BrokerUnavailable(
                    f"reading {topic} stalled for {STALL_SECONDS:g} s after {done} of about "
                    f"{total} letters: is the broker at {settings.kafka_bootstrap_servers} up?"
                )
    finally:
        await consumer.stop()


async def _open(
    consumer: AIOKafkaConsumer, settings: Settings, topic: str
) -> tuple[list[TopicPartition], dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The dead-letter topic's partitions, assigned from their start; and their offsets."""
    found = await partitions_of(settings, [topic])
    if topic not in found:
        raise BrokerUnavailable(
            f"there is no topic {topic}: no worker has started on this cluster with this "
            "KAFKA_TOPIC_PREFIX"
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


async def replay(settings: Settings, replays: Sequence[Replay], progress: Progress) -> int:
    """Send each replay to its source partition, acknowledged by all replicas, in order per
    partition; returns how many were sent. Stops at the first refusal (raised): those before it
    are sent, and a second run re-sends them harmlessly (the event ids repeat)."""
    producer = AIOKafkaProducer(
        **connection(settings),
        client_id="payment-worker-dlq",
        enable_idempotence=True,
        acks="all",
        max_request_size=MAX_MESSAGE_BYTES,
    )
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            await producer.start()
    except Exception as exc:
        await producer.stop()
        raise BrokerUnavailable(
            f"the broker at {settings.kafka_bootstrap_servers} did not answer: {exc!r}"
        ) from exc
    sent = 0
    try:
        for start in range(0, len(replays), _IN_FLIGHT):
            chunk = replays[start : start + _IN_FLIGHT]
            futures = [
                await producer.send(
                    r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers)
                )
                for r in chunk
            ]
            await asyncio.gather(*futures)
            sent += len(chunk)
            progress(sent, len(replays))
    finally:
        await producer.stop()
    return sent
