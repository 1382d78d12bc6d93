"""Payments in PostgreSQL: lock what a batch names, decide in the core, write back."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import TYPE_CHECKING, Any

from worker.core import cloudevents
from worker.core.answers import EventKey
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
    RefundOutcome,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
    decide_payments,
    event_of,
    expire_payments,
)
from worker.core.types import Provider
from worker.db import outbox
from worker.db.answers import answer_rows, answers_found, event_ids
from worker.db.queries import sql, unnest_all, unnest_arrays
from worker.errors import ConcurrentWriteError, PermanentError

if TYPE_CHECKING:
    from worker.db import Connection


async def apply_payment_commands(
    conn: Connection,
    commands: Sequence[PaymentCommand],
    defaults: PaymentDefaults,
    now: datetime,
) -> PaymentPlan:
    """Apply `commands` in order inside the caller's transaction, in a fixed few statements,
    their results queued in the outbox.

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
    webhook_events = [
        c.source_event_id for c in commands if isinstance(c, ReportStatus | RefuseWebhook)
    ]
    provider_events = {
        (c.provider, c.notification.event_id)
        for c in commands
        if isinstance(c, ReportStatus) and c.notification.event_id is not None
    }
    known = await _known(
        conn,
        payments,
        refund_ids,
        [c.payment_id for c in commands if isinstance(c, RefundPayment)],
        webhook_events,
        provider_events,
        {event_of(c) for c in commands if not isinstance(c, IgnoreWebhook)},
    )
    plan = decide_payments(commands, known, defaults, now)
    await write_payment_plan(conn, plan, now)
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
    return plan


async def write_payment_plan(conn: Connection, plan: PaymentPlan, now: datetime) -> None:
    """Write what `plan` changes, as decided at `now`, and queue its results in the outbox, in
    order: one statement (`payments_write`), and one more for each of the three rarer parts: the
    money captured for payments opened in the plan, refunds settled, and replays owed an
    answer."""
    if any((
        plan.created, plan.changed, plan.transitions, plan.refunds, plan.calls, plan.answers,
        plan.messages,
    )):  # fmt: skip
        [(opened, changed, moved, decided, answered)] = await conn.fetch(
            sql("payments_write"),
            *unnest_all(
                "payments_write",
                (list(plan.created.values()), {}),
                (list(plan.changed.values()), {}),
                (plan.transitions, _RESULT),
                (list(plan.refunds.values()), _OPTIONAL_RESULT),
                (plan.calls, {}),
                answer_rows(plan.answers),
                outbox.outbox_rows(plan.messages),
            ),
            now,
        )
        if opened != len(plan.created):
            raise ConcurrentWriteError("a payment id was opened by another worker meanwhile")
        if changed != len(plan.changed):  # locked, and never opened in the same plan
            raise PermanentError("a payment this batch changes does not exist")
        if moved != len(plan.transitions):  # the payments are locked: never retried
            raise PermanentError("a status this batch moves a payment to is recorded already")
        if decided != len(plan.refunds):
            raise ConcurrentWriteError("a refund id was decided by another worker meanwhile")
        if answered != len(plan.answers):
            raise ConcurrentWriteError("an event was answered by another worker meanwhile")
    if captured := [p for p in plan.created.values() if p.captured_id is not None]:
        await conn.execute(
            sql("payments_capture"),
            [p.payment_id for p in captured],
            [p.captured_id for p in captured],
        )
    if plan.refunds_settled:
        settled = list(plan.refunds_settled.values())
        updated = await conn.fetch(
            sql("payment_refunds_settle"),
            *unnest_arrays("payment_refunds_settle", settled, **_OPTIONAL_RESULT),
        )
        if len(updated) != len(settled):
            raise ConcurrentWriteError("a refund was settled by another worker meanwhile")
    if plan.owed:
        owed = list(plan.owed.items())
        await conn.execute(
            sql("gateway_calls_owe"),
            *unnest_arrays(
                "gateway_calls_owe",
                owed,
                kind=lambda item: item[0][0],
                reference_id=lambda item: item[0][1],
                owed=lambda item: item[1],
            ),
        )


# A stored result's columns, from a decision's `result` message (None: no result yet).
_RESULT: dict[str, Callable[[Any], object]] = {
    "result_topic": lambda row: row.result.topic,
    "result_key": lambda row: row.result.key,
    "result_value": lambda row: row.result.value,
}
_OPTIONAL_RESULT: dict[str, Callable[[Any], object]] = {
    "result_topic": lambda row: None if row.result is None else row.result.topic,
    "result_key": lambda row: None if row.result is None else row.result.key,
    "result_value": lambda row: None if row.result is None else row.result.value,
}


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


async def _known(
    conn: Connection,
    payments: dict[str, Payment],
    refund_ids: list[str],
    refunded: list[str],
    webhook_events: list[str],
    provider_events: set[tuple[Provider, str]],
    events: set[EventKey],
) -> Known:
    """What earlier batches decided for the locked `payments`, the `refund_ids` (and which of
    the `refunded` payments have a refund in flight), the `webhook_events` and
    `provider_events` delivered again, and the `events` answered: one statement, after the
    payments are locked."""
    [row] = await conn.fetch(
        sql("payments_read"),
        list(payments),
        refund_ids,
        refunded,
        webhook_events,
        sorted({event_id for _, event_id in provider_events}),
        event_ids(events),
    )
    return Known(
        payments=payments,
        results={
            (payment_id, status): _message(topic, key, value)
            for payment_id, status, topic, key, value in row["results"]
        },
        refunds={refund[0]: refund_decision(*refund) for refund in row["refunds"]},
        refunding=frozenset(row["refunding"]),
        webhooks={
            (event_id, payment_id): _message(topic, key, value)
            for event_id, payment_id, topic, key, value in row["webhooks"]
        },
        # The result of each move these provider events caused, by (provider, event id, the
        # payment moved).
        provider_events={
            (provider, event_id, payment_id): _message(topic, key, value)
            for provider, event_id, payment_id, topic, key, value in row["provider_events"]
            if (provider, event_id) in provider_events
        },
        answered=answers_found(events, row["answers"]),
    )


def refund_decision(
    refund_id: str,
    payment_id: str,
    outcome: RefundOutcome,
    actor_id: str,
    reason: str,
    result_topic: str | None,
    result_key: bytes | None,
    result_value: bytes | None,
    source_event_id: str | None,
) -> RefundDecision:
    """A refund decision read back, from its columns (these names; tests/unit/test_queries.py
    holds `payments_read`'s row to their order). A pending one has no result yet."""
    result = None
    if result_topic is not None and result_key is not None and result_value is not None:
        result = _message(result_topic, result_key, result_value)
    return RefundDecision(
        refund_id=refund_id,
        payment_id=payment_id,
        outcome=outcome,
        actor_id=actor_id,
        reason=reason,
        result=result,
        source_event_id=source_event_id,
    )


def _message(topic: str, key: bytes, value: bytes) -> OutgoingMessage:
    return OutgoingMessage(topic, key, value, tuple(cloudevents.structured_headers()))


async def known_refunds(conn: Connection, refund_ids: list[str]) -> dict[str, RefundDecision]:
    """The decisions taken for the given refund ids."""
    if not refund_ids:
        return {}
    rows = await conn.fetch(sql("payment_refunds_known"), refund_ids)
    return {row["refund_id"]: refund_decision(**row) for row in rows}


def stored_message(row: Any) -> OutgoingMessage:
    """A stored result (`result_topic`, `result_key`, `result_value`) as a message again."""
    return _message(row["result_topic"], row["result_key"], row["result_value"])


def payment_of(row: Any) -> Payment:
    return Payment(**{name: row[name] for name in _PAYMENT_FIELDS})


_PAYMENT_FIELDS = tuple(field.name for field in dataclasses.fields(Payment))
