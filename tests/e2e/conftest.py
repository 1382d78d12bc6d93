"""Fixtures for tests through the real broker and a worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    """Plays the other services: sends events to the worker's topics."""
    client = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await client.start()
    yield client
    await client.stop()
