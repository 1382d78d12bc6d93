"""Provider calls in PostgreSQL: the queue a batch fills, and the writes of their answers."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from worker.core.gateway import RefundReceipt, Refused, Session
from worker.core.messages import OutgoingMessage
from worker.core.payments import Payment, PaymentPlan, settle_refund, settle_session
from worker.core.types import Provider
from worker.db import outbox
from worker.db.payments import (
    known_refunds,
    lock_payments,
    payment_of,
    stored_message,
    write_payment_plan,
)
from worker.db.queries import sql

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection

CallKind = Literal["session", "refund"]


@dataclass(frozen=True, slots=True)
class StartedCall:
    """A call about to be made: what it is for, and whether an earlier attempt was made."""

    kind: CallKind
    reference_id: str
    payment: Payment
    refund_reason: str | None
    # This attempt's number: its answer is written only while no later attempt has started.
    attempt: int
    # The session deadline asked of the provider by an earlier attempt, if any.
    asked_expires_at: datetime | None

    @property
    def earlier_attempts(self) -> int:
        return self.attempt - 1

    @property
    def name(self) -> str:
        return call_name(self.kind, self.reference_id)


def call_name(kind: str, reference_id: str) -> str:
    """A call's name, as its advisory lock and the in-flight set know it."""
    return f"{kind}:{reference_id}"


async def due_calls(
    conn: Connection, now: datetime, limit: int, busy: Collection[str]
) -> list[tuple[CallKind, str, Provider]]:
    """Up to `limit` calls due at `now` that nobody makes, longest waiting first, but for the
    `busy` ones; with their provider."""
    rows = await conn.fetch(sql("gateway_calls_due"), now, limit, list(busy))
    return [(row["kind"], row["reference_id"], row["provider"]) for row in rows]


async def try_lock(conn: asyncpg.Connection[asyncpg.Record], name: str) -> bool:
    """Take the call's advisory lock on `conn` (a session lock, held outside transactions): a
    connection of its own, never a pooled one, which keeps its session (worker.db.pool)."""
    return bool(await conn.fetchval(sql("gateway_calls_try_lock"), name))


async def unlock(conn: asyncpg.Connection[asyncpg.Record], name: str) -> None:
    await conn.fetchval(sql("gateway_calls_unlock"), name)


async def start_call(
    conn: Connection, kind: CallKind, reference_id: str, now: datetime
) -> StartedCall | None:
    """Count an attempt at the call and read what it needs; None when it was settled already."""
    row = await conn.fetchrow(sql("gateway_calls_start"), kind, reference_id, now)
    if row is None:
        return None
    return StartedCall(
        kind=kind,
        reference_id=reference_id,
        payment=payment_of(row),
        refund_reason=row["refund_reason"],
        attempt=row["attempt"],
        asked_expires_at=row["asked_expires_at"],
    )


async def ask_expires_at(conn: Connection, call: StartedCall, deadline: datetime) -> datetime:
    """The session deadline every attempt of `call` asks: `deadline`, unless one was asked."""
    asked: datetime = await conn.fetchval(
        sql("gateway_calls_ask"), call.kind, call.reference_id, deadline
    )
    return asked


async def postpone(
    conn: Connection, kind: CallKind, reference_id: str, until: datetime, why: str
) -> None:
    await conn.execute(sql("gateway_calls_postpone"), kind, reference_id, until, why)


async def drop(conn: Connection, call: StartedCall) -> None:
    """Forget a call there is no reason to make any more (its payment closed before it); the
    replays that waited for its answer get the payment's status instead. In the caller's
    transaction."""
    payment_id = call.payment.payment_id
    payment = (await lock_payments(conn, {payment_id})).get(payment_id)
    owed = await conn.fetchval(sql("gateway_calls_drop"), call.kind, call.reference_id)
    if payment is not None and owed:
        await outbox.enqueue(conn, await _status_answer(conn, payment) * owed)


async def _status_answer(conn: Connection, payment: Payment) -> list[OutgoingMessage]:
    """The result that announced `payment`'s current status (none if it announced none)."""
    row = await conn.fetchrow(sql("payment_transition_result"), payment.payment_id, payment.status)
    return [] if row is None else [stored_message(row)]


async def settle(
    conn: Connection,
    call: StartedCall,
    answer: Session | RefundReceipt | Refused,
    now: datetime,
) -> PaymentPlan | None:
    """Write the provider's answer, inside the caller's transaction: the payment (locked first,
    as batches lock it) moves on, its result is queued, the call leaves the queue. None when
    another worker settled the call first: its answer stands."""
    payment_id = call.payment.payment_id
    payment = (await lock_payments(conn, {payment_id})).get(payment_id)
    finished = await conn.fetchrow(
        sql("gateway_calls_finish"), call.kind, call.reference_id, call.attempt
    )
    if payment is None or finished is None:
        return None
    if call.kind == "session":
        if isinstance(answer, RefundReceipt):
            raise TypeError("a session call answered with a refund")
        plan = settle_session(payment, answer, now)
    else:
        if isinstance(answer, Session):
            raise TypeError("a refund call answered with a session")
        decision = (await known_refunds(conn, [call.reference_id]))[call.reference_id]
        plan = settle_refund(payment, call.reference_id, decision, answer, now)
    await write_payment_plan(conn, plan, now)  # its results queued first
    # Each replay that waited gets the answer too: the call's, or (a session opened for a payment
    # that closed meanwhile announces nothing) the payment's status.
    owed = finished["answers_owed"]
    if owed:
        answers = plan.messages or await _status_answer(conn, payment)
        await outbox.enqueue(conn, answers * owed)
    return plan
