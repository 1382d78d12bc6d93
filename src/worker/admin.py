"""Operators' commands against the worker's database: the parked messages, the outbox's
backlog, and the ledger check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from worker.core.payments import TRANSITIONS
from worker.db import outbox
from worker.db.queries import sql
from worker.settings import Settings


async def parked(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """The parked messages, oldest first."""
    conn = await _connect(settings)
    try:
        return [dict(row) for row in await conn.fetch(sql("parked_list"), limit)]
    finally:
        await conn.close()


async def redrive(settings: Settings, seqs: Sequence[int] | None) -> list[int]:
    """Queue parked messages (`seqs`, or all) for publishing again; returns those moved."""
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(sql("parked_redrive"), None if seqs is None else list(seqs))
    finally:
        await conn.close()
    return [row["seq"] for row in rows]


async def backlog(settings: Settings) -> outbox.Backlog:
    """Messages queued in the outbox and parked, and the age of the oldest queued."""
    conn = await _connect(settings)
    try:
        return await outbox.backlog(conn)
    finally:
        await conn.close()


async def ledger_problems(settings: Settings) -> list[tuple[str, int, list[str]]]:
    """Every invariant the database breaks: (what, how many rows, up to five of them)."""
    moves = [(before, after) for before, targets in TRANSITIONS.items() for after in targets]
    conn = await _connect(settings)
    try:
        rows = await conn.fetch(sql("ledger_check"), [b for b, _ in moves], [a for _, a in moves])
    finally:
        await conn.close()
    return [(row["name"], row["broken"], list(row["examples"])) for row in rows]


async def _connect(settings: Settings) -> asyncpg.Connection:
    connection: asyncpg.Connection = await asyncpg.connect(
        settings.database_url.get_secret_value(), timeout=10
    )
    return connection


def describe(message: dict[str, Any]) -> str:
    """One line per parked message, for the terminal."""
    key = message["key"]
    shown_key = "-" if key is None else key.decode("utf-8", "replace")
    return (
        f"{message['seq']}\t{message['topic']}\tkey={shown_key}\t"
        f"value={message['value_bytes'] or 0}B\tparked={message['parked_at'].isoformat()}\t"
        f"{message['error_class']}: {message['error_message']}"
    )
