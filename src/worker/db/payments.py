"""Payments in PostgreSQL: lock what a batch names, decide in the core, write back."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.core import cloudevents
from worker.core.messages import OutgoingMessage
from worker.core.payments import (
    IgnoreWebhook,
    Known,
    OpenPayment,
    Payment,
    PaymentCommand,
    PaymentDefaults,
    PaymentPlan,
    RefundDecision,
    RefundPayment,
    ReportStatus,
    decide_payments,
    event_of,
    expire_payments,
)
from worker.db.answers import known_answers, record_answers
from worker.db.queries import sql
from worker.errors import ConcurrentWriteError
from worker.messaging import outbox

if TYPE_CHECKING:
    from worker.db import Connection


async def apply_payment_commands(
    conn: Connection,
    commands: Sequence[PaymentCommand],
    defaults: PaymentDefaults,
    now: datetime,
) -> PaymentPlan:
    """Apply `commands` in order inside the caller's transaction, in a fixed few statements.

    No provider is called here: new payments and accepted refunds are queued as gateway calls
    (`gateway_calls`), made once this transaction has committed."""
    if not commands:
        return PaymentPlan()
    payment_ids = {c.payment_id for c in commands if isinstance(c, OpenPayment | RefundPayment)}
    references: set[tuple[str, str]] = set()
    for command in commands:
        if isinstance(command, ReportStatus):
            notification = command.notification
            references.add((command.provider, notification.provider_payment_id))
            if notification.payment_id is not None:
                payment_ids.add(notification.payment_id)
    payments = await lock_payments(conn, payment_ids, references)
    refund_ids = [c.refund_id for c in commands if isinstance(c, RefundPayment)]
    webhook_events = [c.source_event_id for c in commands if isinstance(c, ReportStatus)]
    known = Known(
        payments=payments,
        results=await _known_results(conn, list(payments)),
        refunds=await known_refunds(conn, refund_ids),
        refunding=await _refunding(
            conn, [c.payment_id for c in commands if isinstance(c, RefundPayment)]
        ),
        webhooks=await _known_webhooks(conn, webhook_events),
        answered=await known_answers(
            conn, {event_of(c) for c in commands if not isinstance(c, IgnoreWebhook)}
        ),
    )
    plan = decide_payments(commands, known, defaults, now)
    await write_payment_plan(conn, plan, now)
    await record_answers(conn, plan.answers)
    return plan


async def expire_due(
    conn: Connection, now: datetime, limit: int, skip: Sequence[str] = ()
) -> PaymentPlan:
    """Expire up to `limit` overdue payments that no other transaction holds, but for `skip`."""
    return await expire(conn, await lock_due(conn, now, limit, skip), now)


async def lock_due(
    conn: Connection, now: datetime, limit: int, skip: Sequence[str] = ()
) -> list[Payment]:
    """Lock up to `limit` overdue payments that no other transaction holds, but for `skip`."""
    rows = await conn.fetch(sql("payments_due"), now, limit, list(skip))
    return [payment_of(row) for row in rows]


async def expire(conn: Connection, payments: Sequence[Payment], now: datetime) -> PaymentPlan:
    """Expire the (locked) `payments` and queue their results."""
    plan = expire_payments(payments, now)
    await write_payment_plan(conn, plan, now)
    await outbox.enqueue(conn, plan.messages)
    return plan


async def write_payment_plan(conn: Connection, plan: PaymentPlan, now: datetime) -> None:
    """Write what `plan` changes, as decided at `now`."""
    if plan.created:
        await _insert(conn, list(plan.created.values()))
    if plan.changed:
        changed = list(plan.changed.values())
        await conn.execute(
            sql("payments_update"),
            [p.payment_id for p in changed],
            [p.status for p in changed],
            [p.status_reason for p in changed],
            [p.provider_payment_id for p in changed],
            [p.payment_url for p in changed],
            [p.expires_at for p in changed],
            [p.captured_id for p in changed],
        )
    if plan.transitions:
        moves = plan.transitions
        await conn.execute(
            sql("payment_transitions_insert"),
            [t.payment_id for t in moves],
            [t.to_status for t in moves],
            [t.from_status for t in moves],
            [t.result.topic for t in moves],
            [t.result.key for t in moves],
            [t.result.value for t in moves],
            [t.source_event_id for t in moves],
        )
    if plan.refunds:
        ids, refunds = list(plan.refunds), list(plan.refunds.values())
        inserted = await conn.fetch(
            sql("payment_refunds_insert"),
            ids,
            [r.payment_id for r in refunds],
            [r.outcome for r in refunds],
            [r.actor_id for r in refunds],
            [r.reason for r in refunds],
            [None if r.result is None else r.result.topic for r in refunds],
            [None if r.result is None else r.result.key for r in refunds],
            [None if r.result is None else r.result.value for r in refunds],
            [r.source_event_id for r in refunds],
        )
        if len(inserted) != len(ids):
            raise ConcurrentWriteError("a refund id was decided by another worker meanwhile")
    if plan.refunds_settled:
        ids, settled = list(plan.refunds_settled), list(plan.refunds_settled.values())
        results = [r.result for r in settled if r.result is not None]
        updated = await conn.fetch(
            sql("payment_refunds_settle"),
            ids,
            [r.outcome for r in settled],
            [m.topic for m in results],
            [m.key for m in results],
            [m.value for m in results],
        )
        if len(updated) != len(ids):
            raise ConcurrentWriteError("a refund was settled by another worker meanwhile")
    if plan.calls:
        calls = plan.calls
        await conn.execute(
            sql("gateway_calls_insert"),
            [c.kind for c in calls],
            [c.reference_id for c in calls],
            [c.payment_id for c in calls],
            now,
        )
    if plan.owed:
        owed = list(plan.owed.items())
        await conn.execute(
            sql("gateway_calls_owe"),
            [kind for (kind, _), _ in owed],
            [reference for (_, reference), _ in owed],
            [count for _, count in owed],
        )


async def _insert(conn: Connection, created: list[Payment]) -> None:
    inserted = await conn.fetch(
        sql("payments_insert"),
        [p.payment_id for p in created],
        [p.student_id for p in created],
        [p.course_id for p in created],
        [p.amount for p in created],
        [p.currency for p in created],
        [p.description for p in created],
        [p.status for p in created],
        [p.status_reason for p in created],
        [p.provider for p in created],
        [p.provider_payment_id for p in created],
        [p.payment_url for p in created],
        [p.expires_at for p in created],
        [p.source_event_id for p in created],
    )
    if len(inserted) != len(created):
        raise ConcurrentWriteError("a payment id was opened by another worker meanwhile")


async def lock_payments(
    conn: Connection,
    payment_ids: AbstractSet[str],
    references: AbstractSet[tuple[str, str]] = frozenset(),
) -> dict[str, Payment]:
    """Lock the payments named by id or by (provider, provider payment id), in a fixed order."""
    providers = [provider for provider, _ in references]
    provider_ids = [provider_payment_id for _, provider_payment_id in references]
    rows = await conn.fetch(sql("payments_lock"), list(payment_ids), providers, provider_ids)
    return {row["payment_id"]: payment_of(row) for row in rows}


async def _known_results(
    conn: Connection, payment_ids: list[str]
) -> dict[tuple[str, Any], OutgoingMessage]:
    if not payment_ids:
        return {}
    rows = await conn.fetch(sql("payment_transitions_known"), payment_ids)
    return {(row["payment_id"], row["status"]): stored_message(row) for row in rows}


async def _known_webhooks(
    conn: Connection, event_ids: list[str]
) -> dict[tuple[str, str], OutgoingMessage]:
    if not event_ids:
        return {}
    rows = await conn.fetch(sql("payment_transitions_by_event"), event_ids)
    return {(row["source_event_id"], row["payment_id"]): stored_message(row) for row in rows}


async def known_refunds(conn: Connection, refund_ids: list[str]) -> dict[str, RefundDecision]:
    """The decisions taken for the given refund ids."""
    if not refund_ids:
        return {}
    rows = await conn.fetch(sql("payment_refunds_known"), refund_ids)
    return {
        row["refund_id"]: RefundDecision(
            payment_id=row["payment_id"],
            outcome=row["outcome"],
            actor_id=row["actor_id"],
            reason=row["reason"],
            result=None if row["result_value"] is None else stored_message(row),
            source_event_id=row["source_event_id"],
        )
        for row in rows
    }


async def _refunding(conn: Connection, payment_ids: list[str]) -> frozenset[str]:
    if not payment_ids:
        return frozenset()
    rows = await conn.fetch(sql("payment_refunds_pending"), payment_ids)
    return frozenset(row["payment_id"] for row in rows)


def stored_message(row: Any) -> OutgoingMessage:
    """A stored result (`result_topic`, `result_key`, `result_value`) as a message again."""
    return OutgoingMessage(
        topic=row["result_topic"],
        key=row["result_key"],
        value=row["result_value"],
        headers=tuple(cloudevents.structured_headers()),
    )


def payment_of(row: Any) -> Payment:
    return Payment(**{name: row[name] for name in Payment.__slots__})
