"""Numbered plain-SQL migrations, applied in order under an advisory lock."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

import asyncpg

from worker.db.queries import sql

if TYPE_CHECKING:
    from worker.db import Connection
from worker.errors import Fault, PermanentError
from worker.retry import transient_retry

log = logging.getLogger(__name__)

# Any fixed 64-bit number: the key two workers starting at once both wait on.
MIGRATION_LOCK_KEY = 0x7061796D656E7473  # "payments"

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    """The migrations shipped in `worker/db/migrations`, in version order."""
    found = []
    for entry in resources.files("worker.db.migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise PermanentError(f"migrations must be numbered 0001 upwards with no gap: {versions}")
    return found


_CONTENTION: tuple[Fault, ...] = ("contention",)


async def apply_migrations_in(pool: asyncpg.Pool) -> list[Migration]:
    """`apply_migrations` on a connection of `pool`, tried again when it loses to contention.

    A migration that loses a deadlock is rolled back whole and applied again: an older worker
    may run a batch meanwhile, and when several migrations are missing, one can lock a table
    the batch needs next (0014 locks `coin_lots`, then 0015 waits for the batch's wallets while
    the batch waits for `coin_lots`). Any other fault stops the start, as it did before. The
    connection is reset afterwards: the pool does not reset what it lends (`worker.db.pool`),
    so nothing a migration set for its session stays.
    """
    async for attempt in transient_retry(faults=_CONTENTION):
        with attempt:
            async with pool.acquire() as conn:
                applied = await apply_migrations(conn)
                await conn.reset()
    return applied


async def apply_migrations(conn: Connection) -> list[Migration]:
    """Apply what is missing, all in one transaction; return what was applied.

    The transaction-scoped advisory lock makes concurrent starts safe: the second worker waits,
    then finds everything applied. A changed migration that was already applied is refused.
    """
    migrations = discover()
    applied_now = []
    async with conn.transaction():
        await conn.execute(sql("migrations_lock"), MIGRATION_LOCK_KEY)
        await conn.execute(sql("migrations_table"))
        done = {
            row["version"]: row["checksum"] for row in await conn.fetch(sql("migrations_applied"))
        }
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise PermanentError(
                        f"migration {migration.version:04d}_{migration.name} changed after it "
                        "was applied; add a new migration instead"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                sql("migrations_record"),
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration)
    for migration in applied_now:  # committed: an attempt rolled back logs nothing
        log.info(
            "migration applied",
            extra={"action": "migrate", "version": migration.version, "migration": migration.name},
        )
    return applied_now
