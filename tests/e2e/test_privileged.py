"""Privileged requests with admin assertions, and their audit trail, through the real broker,
a worker process and PostgreSQL (CONTRACT section 8; issue 15 points 3 and 4)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import jwt
import pytest
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.e2e.conftest import WEBHOOK_SECRET, RunningWorker, StartWorker
from tests.e2e.test_payments import open_payment
from tests.e2e.test_read_api import get, ok, token
from tests.events import adjustment, mock_webhook, refund_request, send
from tests.support import eventually

ADJUST, REFUND = "coins.adjustment.requested", "payment.refund.requested"
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def signed(private: Any, lifetime: int = 300, **claims: Any) -> str:
    algorithm = "ES256" if isinstance(private, ec.EllipticCurvePrivateKey) else "EdDSA"
    body = {"sub": "staff-1", "exp": int(time.time()) + lifetime, **claims}
    return jwt.encode(body, private, algorithm=algorithm)


def adjust(adjustment_id: str, student: str, amount: int, assertion: str | None) -> dict[str, Any]:
    data = adjustment(adjustment_id, student, amount)
    data["actor"]["assertion"] = assertion
    return data


@pytest.fixture
async def guarded(start_worker: StartWorker, tmp_path: Path) -> RunningWorker:
    """A worker that honours privileged requests only with an assertion by its keys: one in
    a PEM file, one in a JWKS file."""
    pem = tmp_path / "admin-console.pem"
    pem.write_bytes(
        EC_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwks = tmp_path / "admin-console.jwks.json"
    key = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ED_KEY.public_key()))
    jwks.write_text(json.dumps({"keys": [{**key, "kid": "ed-1"}]}))
    return await start_worker(
        ADMIN_ASSERTION_PUBLIC_KEYS=f"{pem},{jwks}", SIDECAR_RATE_LIMIT_PER_MINUTE="1000000"
    )


async def test_only_proven_requests_are_honoured_and_each_is_audited_once(
    guarded: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, student = guarded, "gus"
    good = signed(EC_KEY, adjustment_id="a-1", student_id=student, amount=500)
    await send(producer, w.prefix, ADJUST, adjust("a-1", student, 500, good), key=student)
    # Unproven, then proven under the same id: `not_authorized` reserved nothing.
    await send(producer, w.prefix, ADJUST, adjust("a-2", student, 700, None), key=student)
    proven = signed(ED_KEY, adjustment_id="a-2", student_id=student, amount=700)
    await send(producer, w.prefix, ADJUST, adjust("a-2", student, 700, proven), key=student)
    # An assertion for another amount; one that expired before the request reached the broker.
    other = signed(EC_KEY, adjustment_id="a-3", student_id=student, amount=-1)
    await send(producer, w.prefix, ADJUST, adjust("a-3", student, -100, other), key=student)
    stale = signed(EC_KEY, -120, adjustment_id="a-4", student_id=student, amount=-100)
    await send(producer, w.prefix, ADJUST, adjust("a-4", student, -100, stale), key=student)
    # The same proven request again, in a new event: a replay, not a second audit record.
    await send(producer, w.prefix, ADJUST, adjust("a-1", student, 500, good), key=student)

    ppid = await open_payment(w, producer, "p-1", student)
    webhook = mock_webhook(ppid, "succeeded", WEBHOOK_SECRET)
    await send(producer, w.prefix, "payment.webhook.received", webhook, key=ppid)
    refund = refund_request("rf-1", "p-1")
    refund["actor"]["assertion"] = signed(ED_KEY, refund_id="rf-1", payment_id="p-1")
    unproven_refund = refund_request("rf-0", "p-1")
    await send(producer, w.prefix, REFUND, unproven_refund, key=student)
    await send(producer, w.prefix, REFUND, refund, key=student)

    admin = token("ops", "admin")

    async def settled() -> None:
        assert (await ok(w, f"/api/v1/wallets/{student}", admin))["balance"] == 1200
        assert (await ok(w, "/api/v1/payments/p-1", admin))["status"] == "refunded"

    await eventually(settled, within=45)
    rejected = await w.results("coins.rejected", at_least=3)
    assert sorted((e["data"]["reference_id"], e["data"]["reason"]) for e in rejected) == [
        ("a-2", "not_authorized"), ("a-3", "not_authorized"), ("a-4", "not_authorized"),
    ]  # fmt: skip
    refused = await w.results("payment.rejected", at_least=1)
    assert [e["data"]["reason"] for e in refused] == ["not_authorized"]

    first = await ok(w, "/api/v1/admin/audit", admin, limit=2)
    second = await ok(w, "/api/v1/admin/audit", admin, limit=2, cursor=first["next_cursor"])
    assert second["next_cursor"] is None
    trail = [*first["items"], *second["items"]]
    assert [(r["action"], r["reference_id"]) for r in trail] == [
        (REFUND, "rf-1"), (ADJUST, "a-2"), (ADJUST, "a-1"),
    ]  # fmt: skip
    assert {(r["actor"]["id"], r["actor"]["role"], r["event_source"]) for r in trail} == {
        ("staff-1", "admin", "tests")
    }
    assert trail[0]["subject"] == "p-1"
    assert trail[0]["change"]["refund"] == "refunded"
    assert (trail[0]["change"]["amount"], trail[0]["change"]["currency"]) == (49900, "INR")
    assert (trail[1]["change"]["amount"], trail[1]["change"]["balance_after"]) == (700, 1200)
    assert (trail[2]["subject"], trail[2]["change"]["amount"]) == (student, 500)
    assert all(r["event_id"] and r["recorded_at"] for r in trail)

    for role in ("student", "service"):
        assert (await get(w, "/api/v1/admin/audit", token(student, role))).status_code == 403
    assert (await get(w, "/api/v1/admin/audit", None)).status_code == 401


async def test_the_audit_trail_cannot_be_changed_or_emptied(
    guarded: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, student = guarded, "hal"
    good = signed(EC_KEY, adjustment_id="a-1", student_id=student, amount=50)
    await send(producer, w.prefix, ADJUST, adjust("a-1", student, 50, good), key=student)

    async def audited() -> None:
        page = await ok(w, "/api/v1/admin/audit", token("ops", "admin"))
        assert len(page["items"]) == 1

    await eventually(audited, within=30)
    conn = await asyncpg.connect(w.database_url)
    try:
        for statement in (
            "UPDATE admin_audit SET actor_id = 'someone-else'",
            "DELETE FROM admin_audit",
            "TRUNCATE admin_audit",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT actor_id FROM admin_audit") == "staff-1"
    finally:
        await conn.close()
