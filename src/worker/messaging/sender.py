"""Sending messages in order with the idempotent producer, and finding the ones refused alone.

Both publishers use it: the consume loop's, which sends a committed batch's results straight
from memory (`worker.messaging.publish`), and the outbox relay (`worker.messaging.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from worker.core.messages import OutgoingMessage
from worker.errors import is_retriable
from worker.messaging.clients import start_with_retry
from worker.retry import transient_retry

log = logging.getLogger(__name__)


class Sender:
    """Sends messages in order and waits for every acknowledgement.

    Topics are event types; the sender adds the deployment's topic prefix. The broker refuses a
    whole producer batch, and the idempotent producer's sequence breaks with it (the batches
    after it fail too): so every message that was not taken is sent again on its own, in order,
    with a new producer, and only one refused alone is reported as refused.
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

    async def start(self) -> None:
        """Start the idempotent producer, waiting for the broker, and learn where `topics` live
        (the first start only): else the first batch to each topic would wait for its
        metadata, one topic after another, and every batch behind it with it."""
        first = self._producer is None
        self._producer = self._new_producer()
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
        idempotent and a result's id is deterministic, so a repeat is harmless)."""
        refused = await self._send_together(messages)
        return await self._send_alone(messages, sorted(refused))

    async def _send_together(self, messages: Sequence[OutgoingMessage]) -> dict[int, Exception]:
        """Each partition's messages in order, in as few producer batches as hold them: one
        delivery to wait for per batch, not per message. A batch the broker refuses refuses
        every message in it (the caller sends those alone next). A large message goes by
        `send`, in its place, so that the producer's size limit still judges it."""
        producer = self._started()
        refused: dict[int, Exception] = {}
        deliveries: list[tuple[list[int], asyncio.Future[Any]]] = []

        async def submit(positions: list[int], sending: Awaitable[asyncio.Future[Any]]) -> None:
            try:
                delivery = await sending
            except Exception as exc:  # noqa: BLE001 - a permanent refusal is sent alone next
                _raise_if_passing(exc)
                refused.update(dict.fromkeys(positions, exc))
            else:
                deliveries.append((positions, delivery))

        for (topic, partition), positions in (await self._by_partition(messages)).items():
            batch = producer.create_batch()
            taken: list[int] = []
            for position in positions:
                message = messages[position]
                if len(message.value or b"") + len(message.key or b"") > _BATCHED_UP_TO:
                    if taken:  # the batch before it goes first
                        await submit(taken, producer.send_batch(batch, topic, partition=partition))
                        batch, taken = producer.create_batch(), []
                    await submit([position], producer.send(**self._arguments(message)))
                    continue
                if not _append(batch, message):  # full: it goes, and a new one starts
                    await submit(taken, producer.send_batch(batch, topic, partition=partition))
                    batch, taken = producer.create_batch(), []
                    _append(batch, message)  # an empty batch takes any message
                taken.append(position)
            if taken:
                await submit(taken, producer.send_batch(batch, topic, partition=partition))
        outcomes = await asyncio.gather(*(d for _, d in deliveries), return_exceptions=True)
        for (positions, _), outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _raise_if_passing(outcome)
                refused.update(dict.fromkeys(positions, outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        return refused

    async def _by_partition(
        self, messages: Sequence[OutgoingMessage]
    ) -> dict[tuple[str, int], list[int]]:
        """The messages' positions by the partition `send` would choose for each: the default
        partitioner's (murmur2 of the key, as Kafka's Java clients hash it)."""
        producer = self._started()
        partitions: dict[str, list[int]] = {}
        grouped: dict[tuple[str, int], list[int]] = {}
        for position, message in enumerate(messages):
            topic = self._topic_prefix + message.topic
            if (known := partitions.get(topic)) is None:
                # The producer's own order of the partitions, as `send` hands them over.
                known = partitions[topic] = list(await producer.partitions_for(topic))
            partition = _PARTITIONER(message.key, known, known)
            grouped.setdefault((topic, partition), []).append(position)
        return grouped

    async def _send_alone(
        self, messages: Sequence[OutgoingMessage], positions: Sequence[int]
    ) -> dict[int, Exception]:
        """Send each message at `positions` on its own, in order, with a new producer after
        any refusal (a refused batch breaks the idempotent producer's sequence)."""
        if not positions:
            return {}
        refused: dict[int, Exception] = {}
        await self._replace_producer()
        for position in positions:
            try:
                await (await self._started().send(**self._arguments(messages[position])))
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

    def _arguments(self, message: OutgoingMessage) -> dict[str, Any]:
        return {
            "topic": self._topic_prefix + message.topic,
            "value": message.value,
            "key": message.key,
            "headers": list(message.headers),
        }


# Larger messages go by `send`, whose size check (`max_request_size`) a batch skips. Below
# aiokafka's batch size (16 KiB), so a batch never holds one message above it.
_BATCHED_UP_TO = 8_192
# The partitioner aiokafka's producer uses when it is given none (as `make_producer` gives it).
_PARTITIONER = DefaultPartitioner()


def _append(batch: Any, message: OutgoingMessage) -> bool:
    """Whether `batch` took `message` (False: it is full)."""
    taken = batch.append(
        key=message.key, value=message.value, timestamp=None, headers=list(message.headers)
    )
    return taken is not None


def _raise_if_passing(error: Exception) -> None:
    """A passing fault is the whole send's: the caller sends everything again later. (A producer
    whose sequence broke, aiokafka's OutOfOrderSequenceNumber, is not one: what it did not send
    goes out alone, with a new producer.)"""
    if is_retriable(error):
        raise error
