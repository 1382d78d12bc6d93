"""The coin ledger in PostgreSQL: load what a batch needs, decide in the core, write back."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from worker.core import cloudevents
from worker.core.answers import Answers
from worker.core.catalog import CatalogItem
from worker.core.coins import (
    CatalogState,
    CoinCommand,
    CoinDecision,
    CoinPlan,
    Key,
    Lot,
    Run,
    StreakState,
    Wallet,
    decide_coins,
    expire_lots,
)
from worker.core.messages import OutgoingMessage
from worker.db import outbox
from worker.db.answers import answer_rows, answers_found, event_ids
from worker.db.queries import sql, unnest_all
from worker.errors import ConcurrentWriteError, PermanentError

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection


async def apply_coin_commands(
    conn: Connection,
    commands: Sequence[CoinCommand],
    now: datetime,
    lifetime: timedelta | None = None,
    upserted: Collection[str] = (),
    partitions: Mapping[str, int] | None = None,
) -> CoinPlan:
    """Apply `commands` in order inside the caller's transaction: lock the wallets, read what
    earlier batches decided and lock the catalog items its redemptions name (`_known`, one
    statement), write (one statement, `_write`). Two statements more when some wallets are
    new. Credits last `lifetime` (COIN_EXPIRY_DAYS; None: for ever). `upserted`: the catalog
    items the same transaction upserts next, locked with those its redemptions name (when it
    has some), so that it locks its items in one statement, in one order. The items of every
    redemption by item are locked, of those decided before too (the statement that locks them
    reads those decisions).
    `partitions`: the input partition of each student's events, kept on the lots made or drawn
    on, whose owner expires them (`lock_due`).

    The wallets are locked before anything earlier is read: a batch that holds the same key as
    one in another transaction (a rebalance, a member evicted while it waited on the database)
    waits for it, then sees its decision and repeats it.
    """
    if not commands:
        return CoinPlan()
    wallets = await _lock_wallets(conn, {c.student_id for c in commands})
    # A debit draws on the wallet's lots: those of debited wallets with coins in lots are read.
    drawing = {c.student_id for c in commands if _debits(c) and wallets[c.student_id].lotted}
    known = await _known(conn, commands, sorted(drawing), upserted)
    plan = decide_coins(
        commands, known.decisions, wallets, now, known.answered, known.streaks,
        lots=known.lots, lifetime=lifetime, catalog=known.catalog,
    )  # fmt: skip
    await _write(conn, plan, partitions or {}, known.streaks)
    return plan


def _debits(command: CoinCommand) -> bool:
    return command.amount < 0 or command.ledger_type == "redemption"


async def lock_due(
    conn: Connection,
    now: datetime,
    limit: int,
    skip: Sequence[str],
    partitions: Collection[int],
) -> dict[str, Wallet]:
    """Lock the wallets of up to `limit` students with due lots credited from the input
    `partitions` (lots from before lots kept theirs go with partition 0) that no other
    transaction holds, but for `skip`."""
    return _wallets(
        await conn.fetch(sql("coins_expiry_due"), now, limit, list(skip), sorted(partitions))
    )


async def expire(
    conn: Connection,
    wallets: Mapping[str, Wallet],
    now: datetime,
    partitions: Collection[int],
) -> CoinPlan:
    """Expire the due lots of the (locked) `wallets` credited from the input `partitions`
    (as `lock_due`), and queue their results: the sweep's, which no input can replay."""
    if not wallets:
        return CoinPlan()
    rows = await conn.fetch(sql("coins_expiry_lots"), list(wallets), now, sorted(partitions))
    plan = expire_lots((_lot(row) for row in rows), wallets, now)
    await _write(conn, plan)
    await outbox.enqueue(conn, plan.messages)
    return plan


def _lot(row: asyncpg.Record) -> Lot:
    return Lot(
        transaction_id=row["transaction_id"],
        student_id=row["student_id"],
        amount=row["amount"],
        remaining=row["remaining"],
        expires_at=row["expires_at"],
        source_event_id=row.get("source_event_id", ""),
    )


def _streak_state(
    runs_found: Iterable[tuple[str, date, date]],
    bonuses_found: Iterable[tuple[str, str, str, bytes]],
) -> StreakState:
    """The runs read, and the bonuses each course completion event read earned earlier (the
    rules repeat those of the events decided before, delivered again)."""
    runs: dict[str, list[Run]] = {}
    for student_id, first_day, last_day in runs_found:
        runs.setdefault(student_id, []).append(Run(first_day, last_day))
    bonuses: dict[tuple[str, str], list[OutgoingMessage]] = {}
    for student_id, event_id, topic, value in bonuses_found:
        message = OutgoingMessage(
            topic, student_id.encode(), value, tuple(cloudevents.structured_headers())
        )
        bonuses.setdefault((student_id, event_id), []).append(message)
    return StreakState(
        runs={student: tuple(sorted(found)) for student, found in runs.items()},
        bonuses={event: tuple(found) for event, found in bonuses.items()},
    )


def _run_changes(
    plan: CoinPlan, before: StreakState
) -> tuple[list[tuple[str, date]], list[tuple[str, Run]]]:
    """The runs the batch changed: (student, first day) of those merged away, to delete, and
    (student, run) of those made or grown, to upsert."""
    gone: list[tuple[str, date]] = []
    kept: list[tuple[str, Run]] = []
    for student, runs in plan.runs.items():
        earlier, now = set(before.runs.get(student, ())), set(runs)
        made = now - earlier
        firsts = {run.first for run in made}
        gone += [(student, run.first) for run in earlier - now if run.first not in firsts]
        kept += [(student, run) for run in sorted(made)]
    return gone, kept


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
    return _wallets(await conn.fetch(sql("coins_lock_wallets"), students))


def _wallets(rows: Iterable[asyncpg.Record]) -> dict[str, Wallet]:
    return {
        row["student_id"]: Wallet(
            row["balance"], row["lifetime_earned"], row["lifetime_spent"], row["lotted"]
        )
        for row in rows
    }


class _Known(NamedTuple):
    """What a batch's coin commands need to know, read after their wallets are locked."""

    decisions: dict[Key, CoinDecision]
    answered: Answers
    lots: dict[str, list[Lot]]
    streaks: StreakState
    catalog: CatalogState


async def _known(
    conn: Connection,
    commands: Sequence[CoinCommand],
    drawing: list[str],
    upserted: Collection[str],
) -> _Known:
    """The decisions taken earlier for the commands' keys, the answers kept for their events,
    the open lots of the `drawing` students, what the course completions need of streaks
    (`_streak_state`), and the catalog items the redemptions by item name (and the `upserted`
    ones, when there are such redemptions), locked, with their students' counts of them: one
    statement, after the wallets are locked (every transaction locks wallets before items)."""
    students, types, references = zip(*{c.key for c in commands}, strict=True)
    events = {c.event for c in commands}
    # Under streak rules, the days of the course completions: the runs near them are read.
    days = sorted(
        {
            (c.student_id, c.reward.day)
            for c in commands
            if c.reward is not None and c.reward.day is not None
        }
    )
    # Every course completion event, for the bonuses of those decided before (asking for those
    # alone would take a statement after this one, which finds them).
    completions = sorted(
        {
            (c.student_id, c.source_event_id)
            for c in commands
            if c.ledger_type == "course_completion"
        }
    )
    # Every redemption by item, decided before or not (the core asks only for the new ones).
    wanted = sorted({(c.student_id, c.item_id) for c in commands if c.item_id})
    items = sorted({item_id for _, item_id in wanted} | set(upserted)) if wanted else []
    [row] = await conn.fetch(
        sql("coins_read"),
        students, types, references, event_ids(events), drawing,
        [student for student, _ in days], [day for _, day in days],
        [student for student, _ in completions], [event_id for _, event_id in completions],
        items, [student for student, _ in wanted], [item_id for _, item_id in wanted],
    )  # fmt: skip
    lots: dict[str, list[Lot]] = {}
    for lot_id, student_id, amount, remaining, expires_at in row["lots"]:
        lots.setdefault(student_id, []).append(
            Lot(lot_id, student_id, amount, remaining, expires_at)
        )
    decisions = {
        (student_id, ledger_type, reference_id): CoinDecision(
            requested_amount=requested_amount,
            outcome=outcome,
            result=OutgoingMessage(
                topic=result_topic,
                key=student_id.encode(),
                value=result_value,
                headers=tuple(cloudevents.structured_headers()),
            ),
            item_id=item_id,
        )
        for student_id, ledger_type, reference_id, requested_amount, outcome, result_topic,
        result_value, item_id in row["decisions"]
    }  # fmt: skip
    catalog = CatalogState(
        items={fields[0]: CatalogItem(*fields) for fields in row["items"]},
        redeemed={(student, item): count for student, item, count in row["redeemed"]},
    )
    streaks = _streak_state(row["runs"], row["bonuses"])
    return _Known(decisions, answers_found(events, row["answers"]), lots, streaks, catalog)


async def _write(
    conn: Connection,
    plan: CoinPlan,
    partitions: Mapping[str, int] | None = None,
    streaks: StreakState | None = None,
) -> None:
    """Write `plan` in one statement, its lots with their student's input partition from
    `partitions`, its runs against the `streaks` read before. A decision or an answer another
    transaction kept meanwhile is a retriable conflict; so it was when the ledger was written
    after the decisions, in a statement of its own, whose unique violation was permanent."""
    if plan.runs and streaks is None:
        raise ValueError("the runs a plan changed are written against the runs read before")
    partition_of = (partitions or {}).get
    if not (
        plan.decisions or plan.entries or plan.answers or plan.wallets or plan.lots_changed
        or plan.items or plan.redeemed or plan.runs
    ):  # fmt: skip
        return
    gone, kept = _run_changes(plan, streaks or StreakState())
    [(decided, entered, answered, balanced)] = await conn.fetch(
        sql("coins_write"),
        *unnest_all(
            "coins_write",
            (list(plan.decisions.items()), _DECISION_COLUMNS),
            (list(plan.wallets.items()), _WALLET_COLUMNS),
            (plan.entries, {}),
            answer_rows(plan.answers),
            (
                list(plan.lots_changed.values()),
                {"input_partition": lambda lot: partition_of(lot.student_id)},
            ),
            (list(plan.items.values()), {}),
            (list(plan.redeemed.items()), _REDEEMED_COLUMNS),
            (gone, {"student_id": itemgetter(0), "first_day": itemgetter(1)}),
            (kept, _RUN_COLUMNS),
        ),
    )
    if decided != len(plan.decisions):
        raise ConcurrentWriteError("a coin request was decided by another worker meanwhile")
    if balanced != len(plan.wallets):  # wallets are never removed: never retried
        raise PermanentError("a wallet this batch changes does not exist")
    if entered != len(plan.entries):  # an entry of a key that has no decision: never retried
        raise PermanentError(
            "a ledger entry with one of these keys exists already, or names a wallet the batch "
            "does not change"
        )
    if answered != len(plan.answers):
        raise ConcurrentWriteError("an event was answered by another worker meanwhile")


# A decision (key, CoinDecision) and a wallet (student id, Wallet) as unnest rows.
_DECISION_COLUMNS: dict[str, Callable[[Any], object]] = {
    "student_id": lambda item: item[0][0],
    "ledger_type": lambda item: item[0][1],
    "reference_id": lambda item: item[0][2],
    "requested_amount": lambda item: item[1].requested_amount,
    "outcome": lambda item: item[1].outcome,
    "result_topic": lambda item: item[1].result.topic,
    "result_value": lambda item: item[1].result.value,
    "item_id": lambda item: item[1].item_id,
}
# An item's students' count ((student id, item id), count), a run (student id, Run).
_REDEEMED_COLUMNS: dict[str, Callable[[Any], object]] = {
    "item_id": lambda item: item[0][1],
    "student_id": lambda item: item[0][0],
    "redeemed": itemgetter(1),
}
_RUN_COLUMNS: dict[str, Callable[[Any], object]] = {
    "student_id": itemgetter(0),
    "first_day": lambda item: item[1].first,
    "last_day": lambda item: item[1].last,
}
_WALLET_COLUMNS: dict[str, Callable[[Any], object]] = {
    "student_id": lambda item: item[0],
    "balance": lambda item: item[1].balance,
    "lifetime_earned": lambda item: item[1].lifetime_earned,
    "lifetime_spent": lambda item: item[1].lifetime_spent,
    "lotted": lambda item: item[1].lotted,
}
