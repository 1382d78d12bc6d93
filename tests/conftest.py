"""Fixtures every tier may use: the local stack and its addresses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from stack.settings import env as local_stack_env
from tests.db import create_template, drop_database, fresh_database
from tests.kafka import delete_test_topics
from tests.support import STACK


@dataclass(frozen=True)
class Stack:
    database_url: str
    kafka_bootstrap: str
    stripe_api_base: str  # Stripe's API simulator, stripe-mock


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The real Kafka, PostgreSQL and stripe-mock the tests run against, started when not
    already up."""
    subprocess.run([STACK, "up"], check=True)
    local = local_stack_env(os.environ)  # what `scripts/stack env` prints
    return Stack(
        database_url=os.environ.get("DATABASE_URL") or local["DATABASE_URL"],
        kafka_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        or local["KAFKA_BOOTSTRAP_SERVERS"],
        stripe_api_base=os.environ.get("STRIPE_API_BASE") or local["STRIPE_API_BASE"],
    )


@pytest.fixture(autouse=True)
async def _delete_test_topics() -> AsyncIterator[None]:
    """Topics a test made on the shared broker go with it: thousands of partitions left behind
    exhaust the broker's heap within a few runs of the suite."""
    yield
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:  # a private broker's topics go with the broker
        with contextlib.suppress(Exception):
            await asyncio.wait_for(delete_test_topics(bootstrap), 30)


@pytest.fixture(scope="session")
async def migrated_template(stack: Stack) -> AsyncIterator[str]:
    """Migrations applied once per session; each test copies the result."""
    name = await create_template(stack.database_url)
    yield name
    await drop_database(stack.database_url, name)


@pytest.fixture
async def empty_db(stack: Stack) -> AsyncIterator[str]:
    """A database of this test's own with nothing in it, for migration tests."""
    async with fresh_database(stack.database_url, None) as url:
        yield url


@pytest.fixture
async def db_url(stack: Stack, migrated_template: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    async with fresh_database(stack.database_url, migrated_template) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to this test's database."""
    connection = await asyncpg.connect(db_url)
    yield connection
    await connection.close()


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    """Plays the other services: sends events to the worker's topics."""
    client = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await client.start()
    yield client
    await client.stop()
