"""Sending messages in order with the idempotent producer, and finding the ones refused alone.

Both publishers use it: the consume loop's, which sends a committed batch's results straight
from memory (`worker.messaging.publish`), and the outbox relay (`worker.messaging.outbox`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

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
        producer = self._started()
        refused: dict[int, Exception] = {}
        deliveries: list[tuple[int, asyncio.Future[Any]]] = []
        for position, message in enumerate(messages):
            try:
                delivery = await producer.send(**self._arguments(message))
            except Exception as exc:  # noqa: BLE001 - a permanent refusal is sent alone next
                _raise_if_passing(exc)
                refused[position] = exc
            else:
                deliveries.append((position, delivery))
        outcomes = await asyncio.gather(*(d for _, d in deliveries), return_exceptions=True)
        for (position, _), outcome in zip(deliveries, outcomes, strict=True):
            if isinstance(outcome, Exception):
                _raise_if_passing(outcome)
                refused[position] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return refused

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


def _raise_if_passing(error: Exception) -> None:
    """A passing fault is the whole send's: the caller sends everything again later. (A producer
    whose sequence broke, aiokafka's OutOfOrderSequenceNumber, is not one: what it did not send
    goes out alone, with a new producer.)"""
    if is_retriable(error):
        raise error
