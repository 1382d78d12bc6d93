"""The payment lifecycle through the real broker and a worker process (CONTRACT sections 2-6)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from tests.conftest import Stack
from tests.e2e.conftest import WEBHOOK_SECRET, RunningWorker, StartWorker
from tests.events import (
    STRUCTURED,
    mock_webhook,
    payment_request,
    refund_request,
    send,
    structured,
)
from tests.kafka import keep_producer_time, read_all
from tests.support import eventually
from tests.worker_process import running_worker, worker_env
from worker.core.signatures import stripe_signature
from worker.messaging.clients import TOPIC_CONFIGS

WEBHOOK = "payment.webhook.received"


async def open_payment(w: RunningWorker, producer: AIOKafkaProducer, pid: str, s: str) -> str:
    """Request a payment and return its provider payment id, from `payment.session.created`."""
    await send(producer, w.prefix, "payment.requested", payment_request(pid, s), key=s)

    async def opened() -> str:
        sessions = await w.results("payment.session.created", at_least=1)
        found = [e for e in sessions if e["data"]["payment_id"] == pid]
        assert found, f"no session for {pid}"
        ppid: str = found[0]["data"]["provider_payment_id"]
        return ppid

    return await eventually(opened, within=30)


async def notify(
    w: RunningWorker, producer: AIOKafkaProducer, ppid: str, status: str, **kw: Any
) -> None:
    secret = kw.pop("secret", WEBHOOK_SECRET)
    await send(producer, w.prefix, WEBHOOK, mock_webhook(ppid, status, secret, **kw), key=ppid)


async def results_for(w: RunningWorker, kind: str, at_least: int, pid: str | None) -> list[dict]:  # type: ignore[type-arg]
    events = await w.results(kind, at_least=at_least)
    return [e for e in events if pid is None or e["data"].get("payment_id") == pid]


async def payment_row(w: RunningWorker, pid: str) -> asyncpg.Record:
    conn = await asyncpg.connect(w.database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM payments WHERE payment_id = $1", pid)
        assert row is not None
        return row
    finally:
        await conn.close()


async def metric(w: RunningWorker, line_start: str) -> float:
    text = (await w.worker.get("/metrics")).text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)
    ]
    return sum(values)


async def test_request_session_then_confirmed_failed_and_cancelled(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    ppids = {pid: await open_payment(w, producer, pid, "ana") for pid in ("p-ok", "p-no", "p-x")}
    session = (await results_for(w, "payment.session.created", 3, "p-ok"))[0]
    assert session["subject"] == "ana"
    assert session["data"]["payment_url"].endswith("/" + ppids["p-ok"])
    assert session["data"]["provider"] == "mock"
    row = await payment_row(w, "p-ok")
    assert row["status"] == "initiated"
    ttl = (row["expires_at"] - row["created_at"]).total_seconds()
    assert abs(ttl - 30 * 60) < 5  # PAYMENT_SESSION_TTL_MINUTES's default

    await notify(w, producer, ppids["p-ok"], "succeeded")
    await notify(w, producer, ppids["p-no"], "failed")
    await notify(w, producer, ppids["p-x"], "cancelled")
    confirmed = (await results_for(w, "payment.confirmed", 1, None))[0]
    assert confirmed["data"]["payment_id"] == "p-ok"
    assert confirmed["data"]["amount"] == 49900
    assert confirmed["data"]["currency"] == "INR"
    assert confirmed["subject"] == "ana"
    assert (await results_for(w, "payment.failed", 1, None))[0]["data"]["status"] == "failed"
    cancelled = (await results_for(w, "payment.cancelled", 1, None))[0]
    assert cancelled["data"]["payment_id"] == "p-x"
    for pid, status in (("p-ok", "succeeded"), ("p-no", "failed"), ("p-x", "cancelled")):
        assert (await payment_row(w, pid))["status"] == status
    assert await metric(w, 'payment_worker_payment_transitions_total{from_status="initiated"') == 3


async def test_duplicates_repeat_their_results_and_conflicts_are_rejected(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    ppid = await open_payment(w, producer, "p-1", "ben")
    await send(producer, w.prefix, "payment.requested", payment_request("p-1", "ben"), key="ben")
    sessions = await results_for(w, "payment.session.created", 2, "p-1")
    assert len(sessions) == 2
    assert sessions[0] == sessions[1]  # the same event, id and time included

    await notify(w, producer, ppid, "succeeded")
    await notify(w, producer, ppid, "succeeded")
    confirmed = await results_for(w, "payment.confirmed", 2, "p-1")
    assert confirmed[0] == confirmed[1]

    changed = payment_request("p-1", "ben", amount=100)
    await send(producer, w.prefix, "payment.requested", changed, key="ben")
    rejected = (await results_for(w, "payment.rejected", 1, "p-1"))[0]
    assert rejected["data"]["reason"] == "idempotency_conflict"
    row = await payment_row(w, "p-1")
    assert (row["amount"], row["status"]) == (49900, "succeeded")
    # A failure reported after the success moves nothing: nothing but a refund leaves succeeded.
    await notify(w, producer, ppid, "failed")
    reasons = [e["data"]["reason"] for e in await results_for(w, "payment.rejected", 2, "p-1")]
    assert reasons == ["idempotency_conflict", "invalid_transition"]
    assert (await payment_row(w, "p-1"))["status"] == "succeeded"


async def test_an_unpaid_session_expires_and_a_late_success_still_wins(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker(
        PAYMENT_SESSION_TTL_MINUTES="0.05", PAYMENT_EXPIRY_INTERVAL_SECONDS="0.5"
    )  # a 3-second session, swept every half second
    ppid = await open_payment(w, producer, "p-late", "cai")
    expired = (await results_for(w, "payment.expired", 1, "p-late"))[0]
    assert expired["data"]["status"] == "expired"
    assert (await payment_row(w, "p-late"))["status"] == "expired"

    await notify(w, producer, ppid, "succeeded")
    confirmed = (await results_for(w, "payment.confirmed", 1, "p-late"))[0]
    assert confirmed["subject"] == "cai"
    assert (await payment_row(w, "p-late"))["status"] == "succeeded"
    assert await metric(w, "payment_worker_payment_late_successes_total") == 1
    expiries = await metric(
        w, 'payment_worker_payment_transitions_total{from_status="initiated",to_status="expired"}'
    )
    assert expiries == 1


async def test_an_admin_refunds_a_succeeded_payment_and_others_are_refused(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    paid = await open_payment(w, producer, "p-paid", "dee")
    await open_payment(w, producer, "p-open", "dee")
    await notify(w, producer, paid, "succeeded")
    await results_for(w, "payment.confirmed", 1, "p-paid")

    refund = "payment.refund.requested"
    await send(producer, w.prefix, refund, refund_request("rf-0", "p-paid", "student"), key="dee")
    await send(producer, w.prefix, refund, refund_request("rf-1", "p-paid"), key="dee")
    await send(producer, w.prefix, refund, refund_request("rf-2", "p-open"), key="dee")
    await send(producer, w.prefix, refund, refund_request("rf-3", "p-none"), key="dee")
    refunded = (await results_for(w, "payment.refunded", 1, "p-paid"))[0]
    assert refunded["data"]["reason"] == "duplicate purchase"
    rejected = await results_for(w, "payment.rejected", 3, None)
    assert {(e["data"]["payment_id"], e["data"]["reason"]) for e in rejected} == {
        ("p-paid", "not_authorized"), ("p-open", "invalid_transition"),
        ("p-none", "unknown_payment"),
    }  # fmt: skip
    assert (await payment_row(w, "p-paid"))["status"] == "refunded"
    assert (await payment_row(w, "p-open"))["status"] == "initiated"


async def test_forged_and_stale_webhooks_are_refused_and_change_nothing(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    ppid = await open_payment(w, producer, "p-1", "eve")
    await notify(w, producer, ppid, "succeeded", secret="guessed")
    await notify(w, producer, ppid, "succeeded", signed_at=int(time.time()) - 600)
    tampered = mock_webhook(ppid, "succeeded", WEBHOOK_SECRET)
    tampered["body"] = tampered["body"].replace("49900", "100")
    await send(producer, w.prefix, WEBHOOK, tampered, key=ppid)
    stripe = {"provider": "stripe", "headers": tampered["headers"], "body": tampered["body"]}
    await send(producer, w.prefix, WEBHOOK, stripe, key=ppid)  # no stripe secret is set
    await notify(w, producer, ppid, "succeeded", amount=100)  # signed, but the wrong amount

    # Signature refusals are keyed by the webhook's key (no student is known), the amount
    # mismatch by the payment's student: two partitions, so compare without order.
    rejected = await results_for(w, "payment.rejected", 5, None)
    assert sorted((e["data"]["reason"], e["data"]["payment_id"] or "") for e in rejected) == [
        ("amount_mismatch", "p-1"), ("invalid_signature", ""), ("invalid_signature", ""),
        ("invalid_signature", ""), ("stale_signature", ""),
    ]  # fmt: skip
    assert (await payment_row(w, "p-1"))["status"] == "initiated"
    refusals = 'payment_worker_webhook_refusals_total{provider="mock",reason="invalid_signature"}'
    assert await metric(w, refusals) == 2


async def test_a_signed_webhook_with_a_malformed_body_is_dead_lettered_whole(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w = payment_worker
    body = '{"id": "n1", "type": "payment.succeeded", "data": {"amount": "lots"}}'
    data = {
        "provider": "mock",
        "headers": {"Stripe-Signature": stripe_signature(body, WEBHOOK_SECRET, int(time.time()))},
        "body": body,
    }
    sent = await send(producer, w.prefix, WEBHOOK, data, key="ppid-1")
    dead = await read_all(w.bootstrap, w.prefix + "payment-worker.dlq", at_least=1)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert headers["dlq.source.offset"] == str(sent.offset).encode()
    assert b"mock webhook body" in headers["dlq.error.message"]
    assert json.loads(dead[0].value or b"")["data"] == data


async def test_the_webhook_topic_keeps_the_brokers_append_time(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    """The worker creates the webhook topic with LogAppendTime: a producer cannot set a
    webhook's record time back (the record of a replayed webhook is stamped when it arrives)."""
    rewound = int(time.time() * 1000) - 3_600_000  # an hour ago
    sent = await producer.send_and_wait(
        payment_worker.prefix + "payment.webhook.received",
        b"{}",
        key=b"pp-1",
        timestamp_ms=rewound,
    )
    assert sent.timestamp_type == 1  # LogAppendTime
    assert sent.timestamp > rewound + 3_000_000
    other = await producer.send_and_wait(
        payment_worker.prefix + "course.completed", b"{}", key=b"s-1", timestamp_ms=rewound
    )
    assert (other.timestamp_type, other.timestamp) == (0, rewound)  # CreateTime elsewhere


async def test_a_webhooks_age_is_judged_by_the_brokers_append_time(
    payment_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    """Not by the event's `time` or the record's timestamp, which its producer writes."""
    w = payment_worker
    ppid = await open_payment(w, producer, "p-time", "fay")
    hour_ago = int(time.time()) - 3600
    # A notification signed an hour ago, replayed now with its time and timestamp set back.
    replayed = mock_webhook(ppid, "succeeded", WEBHOOK_SECRET, signed_at=hour_ago)
    back = datetime.fromtimestamp(hour_ago, UTC).isoformat()
    value = structured(WEBHOOK, replayed, subject=ppid, at=back)
    await producer.send_and_wait(
        w.prefix + WEBHOOK, value, key=ppid.encode(), headers=STRUCTURED,
        timestamp_ms=hour_ago * 1000,
    )  # fmt: skip
    stale = await results_for(w, "payment.rejected", 1, None)
    assert [e["data"]["reason"] for e in stale] == ["stale_signature"]
    # Signed now, in an event whose `time` says two days ago (tests.events.TIME): it holds.
    await notify(w, producer, ppid, "succeeded")
    await results_for(w, "payment.confirmed", 1, "p-time")
    assert (await payment_row(w, "p-time"))["status"] == "succeeded"


async def test_a_worker_warns_of_an_existing_webhook_topic_keeping_the_producers_time(
    stack: Stack, empty_db: str, tmp_path: Path
) -> None:
    """It never changes an existing topic, but says at start what that one lacks."""
    env = worker_env(empty_db, stack.kafka_bootstrap, PAYMENT_WEBHOOK_SECRET_MOCK=WEBHOOK_SECRET)
    await keep_producer_time(stack.kafka_bootstrap, env)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()  # the topics are checked before the worker is ready
        assert await worker.stop() == 0
    warnings = [  # read once the process has ended: nothing of its log is still unwritten
        json.loads(line)
        for line in worker.log_path.read_text().splitlines()
        if '"check_topics"' in line
    ]
    assert {(w["level"], w["topic"]) for w in warnings} == {
        ("WARNING", env["KAFKA_TOPIC_PREFIX"] + topic) for topic in TOPIC_CONFIGS
    }
    assert all("message.timestamp.type=CreateTime" in w["message"] for w in warnings)
