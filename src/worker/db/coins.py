"""The coin ledger in PostgreSQL: load what a batch needs, decide in the core, write back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from worker.core import cloudevents
from worker.core.coins import CoinCommand, CoinDecision, CoinPlan, Key, Wallet, decide_coins
from worker.core.messages import OutgoingMessage
from worker.db.answers import known_answers, record_answers
from worker.db.queries import sql
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
    students = sorted({c.student_id for c in commands})
    await conn.execute(sql("coins_ensure_wallets"), students)
    wallets = {
        row["student_id"]: Wallet(row["balance"], row["lifetime_earned"], row["lifetime_spent"])
        for row in await conn.fetch(sql("coins_lock_wallets"), students)
    }
    known = await _known_decisions(conn, {c.key for c in commands})
    answered = await known_answers(conn, {c.event for c in commands})
    plan = decide_coins(commands, known, wallets, now, answered)
    await _write(conn, plan)
    return plan


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
        keys, decisions = list(plan.decisions), list(plan.decisions.values())
        kept = await conn.fetchval(
            sql("coins_record_decisions"),
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            [d.requested_amount for d in decisions],
            [d.outcome for d in decisions],
            [d.result.topic for d in decisions],
            [d.result.value for d in decisions],
        )
        if kept != len(decisions):
            raise ConcurrentWriteError("a coin request was decided by another worker meanwhile")
    if plan.entries:
        entries = plan.entries
        await conn.execute(
            sql("coins_insert_entries"),
            [e.transaction_id for e in entries],
            [e.student_id for e in entries],
            [e.ledger_type for e in entries],
            [e.reference_id for e in entries],
            [e.amount for e in entries],
            [e.balance_after for e in entries],
            [e.source_event_id for e in entries],
        )
    await record_answers(conn, plan.answers)
    if plan.wallets:
        students, wallets = list(plan.wallets), list(plan.wallets.values())
        await conn.execute(
            sql("coins_update_wallets"),
            students,
            [w.balance for w in wallets],
            [w.lifetime_earned for w in wallets],
            [w.lifetime_spent for w in wallets],
        )
