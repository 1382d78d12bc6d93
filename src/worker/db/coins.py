"""The coin ledger in PostgreSQL: load what a batch needs, decide in the core, write back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from worker.core import cloudevents
from worker.core.coins import CoinCommand, CoinDecision, CoinPlan, Key, Wallet, decide_coins
from worker.core.messages import OutgoingMessage
from worker.db.answers import known_answers, record_answers
from worker.db.queries import sql, unnest_arrays
from worker.errors import ConcurrentWriteError

if TYPE_CHECKING:
    from worker.db import Connection


async def apply_coin_commands(
    conn: Connection, commands: Sequence[CoinCommand], now: datetime
) -> CoinPlan:
    """Apply `commands` in order inside the caller's transaction: a few statements per batch.

    The wallets are locked before anything earlier is read: a batch that holds the same key as
    one in another transaction (a rebalance, a member evicted while it waited on the database)
    waits for it, then sees its decision and repeats it.
    """
    if not commands:
        return CoinPlan()
    wallets = await _lock_wallets(conn, {c.student_id for c in commands})
    known = await _known_decisions(conn, {c.key for c in commands})
    answered = await known_answers(conn, {c.event for c in commands})
    plan = decide_coins(commands, known, wallets, now, answered)
    await _write(conn, plan)
    return plan


async def _lock_wallets(conn: Connection, students: set[str]) -> dict[str, Wallet]:
    """Lock the wallets of `students` until commit, creating the missing ones (balance 0).

    Most students of a batch have a wallet already: those are locked at once, and only the
    missing ones are inserted and then locked (two statements more, only when some are
    missing). Two batches creating one wallet queue behind each other on the insert. Three can
    deadlock (a wallet committed by one between the first statements of the two others, each
    holding a lock the other then needs); PostgreSQL cancels one, a passing fault that retries
    its batch, which then finds everything committed.
    """
    wallets = await _locked(conn, sorted(students))
    if missing := sorted(students - wallets.keys()):
        await conn.execute(sql("coins_ensure_wallets"), missing)
        wallets.update(await _locked(conn, missing))
    return wallets


async def _locked(conn: Connection, students: list[str]) -> dict[str, Wallet]:
    return {
        row["student_id"]: Wallet(row["balance"], row["lifetime_earned"], row["lifetime_spent"])
        for row in await conn.fetch(sql("coins_lock_wallets"), students)
    }


async def _known_decisions(conn: Connection, keys: set[Key]) -> dict[Key, CoinDecision]:
    students, types, references = zip(*keys, strict=True)
    rows = await conn.fetch(sql("coins_known"), students, types, references)
    return {
        (row["student_id"], row["type"], row["reference_id"]): CoinDecision(
            requested_amount=row["requested_amount"],
            outcome=row["outcome"],
            result=OutgoingMessage(
                topic=row["result_topic"],
                key=row["student_id"].encode(),
                value=row["result_value"],
                headers=tuple(cloudevents.structured_headers()),
            ),
        )
        for row in rows
    }


async def _write(conn: Connection, plan: CoinPlan) -> None:
    # Decisions first: a key decided meanwhile is a retriable conflict, not a unique violation
    # of the ledger below.
    if plan.decisions:
        decided = list(plan.decisions.items())
        kept = await conn.fetchval(
            sql("coins_record_decisions"),
            *unnest_arrays(
                "coins_record_decisions",
                decided,
                student_id=lambda item: item[0][0],
                ledger_type=lambda item: item[0][1],
                reference_id=lambda item: item[0][2],
                requested_amount=lambda item: item[1].requested_amount,
                outcome=lambda item: item[1].outcome,
                result_topic=lambda item: item[1].result.topic,
                result_value=lambda item: item[1].result.value,
            ),
        )
        if kept != len(decided):
            raise ConcurrentWriteError("a coin request was decided by another worker meanwhile")
    if plan.entries:
        await conn.execute(
            sql("coins_insert_entries"), *unnest_arrays("coins_insert_entries", plan.entries)
        )
    await record_answers(conn, plan.answers)
    if plan.wallets:
        await conn.execute(
            sql("coins_update_wallets"),
            *unnest_arrays(
                "coins_update_wallets",
                list(plan.wallets.items()),
                student_id=lambda item: item[0],
                balance=lambda item: item[1].balance,
                lifetime_earned=lambda item: item[1].lifetime_earned,
                lifetime_spent=lambda item: item[1].lifetime_spent,
            ),
        )
