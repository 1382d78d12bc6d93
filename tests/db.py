"""Databases for tests: a migrated template, copied per test (fast, and fully isolated)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_fixed

from worker.db.migrate import apply_migrations


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(server_url: str, name: str, template: str | None = None) -> str:
    conn = await asyncpg.connect(server_url)
    try:
        # Identifiers cannot be parameters; names here are generated hex, never input.
        clause = f" TEMPLATE {template}" if template else ""
        await conn.execute(f"CREATE DATABASE {name}{clause}")
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        # FORCE ends the test's own sessions, but it may not end an autovacuum worker (a
        # superuser's process) that happens to be in the database: that one ends by itself.
        async for attempt in AsyncRetrying(
            stop=stop_after_delay(30),
            wait=wait_fixed(0.2),
            retry=retry_if_exception_type(asyncpg.InsufficientPrivilegeError),
            reraise=True,
        ):
            with attempt:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


async def create_template(server_url: str) -> str:
    """A database with every migration applied, to copy per test."""
    name = f"pw_template_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_url, name)
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    return name


@asynccontextmanager
async def fresh_database(server_url: str, template: str | None) -> AsyncIterator[str]:
    name = f"pw_test_{uuid.uuid4().hex[:12]}"
    url = await create_database(server_url, name, template)
    try:
        yield url
    finally:
        await drop_database(server_url, name)
