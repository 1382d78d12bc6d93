"""The read API against the real PostgreSQL, with data written by the real pipeline."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import pytest
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import WEBHOOK_SECRET, RunningWorker, StartWorker
from tests.e2e.test_payments import open_payment
from tests.events import completed, mock_webhook, payment_request, redemption, send
from tests.support import eventually
from tests.worker_process import JWT_SECRET
from worker.sidecar.auth import Role, mint_token

ROUTES = (
    "/api/v1/wallets/{student_id}",
    "/api/v1/wallets/{student_id}/transactions",
    "/api/v1/students/{student_id}/payments",
    "/api/v1/payments/{payment_id}",
)


def token(sub: str, role: Role = "student", secret: str = JWT_SECRET) -> str:
    return mint_token(secret, sub, role, timedelta(minutes=10))


async def get(w: RunningWorker, path: str, bearer: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(base_url=w.worker.base_url, timeout=10) as client:
        return await client.get(path, headers=headers, params=params)


async def ok(w: RunningWorker, path: str, bearer: str, **params: Any) -> Any:
    response = await get(w, path, bearer, **params)
    assert response.status_code == 200, response.text
    return response.json()


async def credit_courses(
    w: RunningWorker, producer: AIOKafkaProducer, student: str, courses: range
) -> None:
    """Complete `courses` and wait until the student's ledger holds them all."""
    for n in courses:
        await send(
            producer, w.prefix, "course.completed", completed(student, f"c-{n}"), key=student
        )
    admin, wanted = token("ops", "admin"), {f"c-{n}" for n in courses}

    async def applied() -> None:
        page = await ok(w, f"/api/v1/wallets/{student}/transactions", admin, limit=100)
        assert wanted <= {e["reference_id"] for e in page["items"]}

    await eventually(applied, within=30)


@pytest.fixture
async def reader(start_worker: StartWorker) -> RunningWorker:
    # Far above what these tests ask for: the limit has a test of its own (below).
    return await start_worker(
        SIDECAR_STATEMENT_TIMEOUT_MS="500",
        SIDECAR_DB_POOL_SIZE="2",
        SIDECAR_RATE_LIMIT_PER_MINUTE="1000000",
    )


async def test_every_route_answers_from_what_the_pipeline_wrote(
    reader: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, me = reader, token("ana")
    await credit_courses(w, producer, "ana", range(1, 4))
    await send(
        producer, w.prefix, "coins.redemption.requested", redemption("r-1", "ana", 50), key="ana"
    )
    paid = await open_payment(w, producer, "p-1", "ana")
    await open_payment(w, producer, "p-2", "ana")
    await send(producer, w.prefix, "payment.webhook.received",
               mock_webhook(paid, "succeeded", WEBHOOK_SECRET), key=paid)  # fmt: skip

    async def settled() -> None:
        assert (await ok(w, "/api/v1/payments/p-1", me))["status"] == "succeeded"
        assert (await ok(w, "/api/v1/wallets/ana", me))["balance"] == 250

    await eventually(settled, within=30)
    wallet = await ok(w, "/api/v1/wallets/ana", me)
    amounts = ("balance", "lifetime_earned", "lifetime_spent")
    assert wallet["student_id"] == "ana"
    assert [wallet[k] for k in amounts] == [250, 300, 50]
    assert wallet["updated_at"]

    ledger = await ok(w, "/api/v1/wallets/ana/transactions", me)
    assert ledger["next_cursor"] is None
    assert [(e["reference_id"], e["amount"]) for e in ledger["items"]] == [
        ("r-1", -50), ("c-3", 100), ("c-2", 100), ("c-1", 100),
    ]  # fmt: skip
    assert [e["balance_after"] for e in ledger["items"]] == [250, 300, 200, 100]
    assert ledger["items"][0]["type"] == "redemption"
    assert all(isinstance(e["amount"], int) for e in ledger["items"])

    payments = await ok(w, "/api/v1/students/ana/payments", me)
    assert [(p["payment_id"], p["status"]) for p in payments["items"]] == [
        ("p-2", "initiated"), ("p-1", "succeeded"),
    ]  # fmt: skip
    only_paid = await ok(w, "/api/v1/students/ana/payments", me, status="succeeded")
    assert [p["payment_id"] for p in only_paid["items"]] == ["p-1"]
    payment = await ok(w, "/api/v1/payments/p-1", me)
    assert payment["provider_payment_id"] == paid
    assert (payment["amount"], payment["currency"], payment["provider"]) == (49900, "INR", "mock")
    assert set(payment) == {
        "payment_id", "student_id", "course_id", "amount", "currency", "status", "provider",
        "provider_payment_id", "payment_url", "expires_at", "created_at", "updated_at",
    }  # fmt: skip

    nobody = await ok(w, "/api/v1/wallets/nobody", token("nobody"))
    assert (nobody["balance"], nobody["updated_at"]) == (0, None)
    empty = await ok(w, "/api/v1/wallets/nobody/transactions", token("nobody"))
    assert empty == {"items": [], "next_cursor": None}
    assert (await get(w, "/api/v1/payments/p-404", token("ops", "admin"))).status_code == 404


async def test_pages_have_no_gap_and_no_repeat_while_new_entries_arrive(
    reader: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, me = reader, token("bo")
    await credit_courses(w, producer, "bo", range(25))
    first = await ok(w, "/api/v1/wallets/bo/transactions", me, limit=7)
    seen = [e["reference_id"] for e in first["items"]]
    cursor = first["next_cursor"]
    # Entries arriving meanwhile are newer than every page already handed out: none of them
    # may shift a later page.
    await credit_courses(w, producer, "bo", range(25, 30))
    pages = 1
    while cursor:
        page = await ok(w, "/api/v1/wallets/bo/transactions", me, limit=7, cursor=cursor)
        seen += [e["reference_id"] for e in page["items"]]
        cursor, pages = page["next_cursor"], pages + 1
    assert pages == 4  # 7 + 7 + 7 + 4
    assert seen == [f"c-{n}" for n in reversed(range(25))]
    fresh = await ok(w, "/api/v1/wallets/bo/transactions", me, limit=5)
    assert [e["reference_id"] for e in fresh["items"]] == [f"c-{n}" for n in range(29, 24, -1)]

    for n in range(5):
        await send(
            producer, w.prefix, "payment.requested", payment_request(f"p-{n}", "bo"), key="bo"
        )
    await eventually(lambda: _count_payments(w, "bo", 5), within=30)
    listed, cursor = [], None
    while True:
        page = await ok(
            w, "/api/v1/students/bo/payments", me, limit=2, **({"cursor": cursor} if cursor else {})
        )
        listed += [p["payment_id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert listed == ["p-4", "p-3", "p-2", "p-1", "p-0"]


async def _count_payments(w: RunningWorker, student: str, expected: int) -> None:
    page = await ok(w, f"/api/v1/students/{student}/payments", token("ops", "admin"), limit=100)
    assert len(page["items"]) == expected


async def test_the_auth_matrix(reader: RunningWorker, producer: AIOKafkaProducer) -> None:
    w = reader
    await open_payment(w, producer, "p-ana", "ana")
    await open_payment(w, producer, "p-bo", "bo")
    await eventually(lambda: _count_payments(w, "bo", 1), within=30)

    def paths(student: str, payment: str) -> list[str]:
        return [r.format(student_id=student, payment_id=payment) for r in ROUTES]

    future = jwt.encode({"sub": "ana", "role": "admin"}, JWT_SECRET, algorithm="HS256")
    bad_tokens = {
        "missing": None,
        "expired": mint_token(JWT_SECRET, "ana", "admin", timedelta(seconds=-1)),
        "no-exp": future,
        "wrong-secret": token("ana", "admin", secret="another-secret-of-at-least-32-bytes"),
        "bad-role": mint_token(JWT_SECRET, "ana", "owner", timedelta(minutes=5)),  # type: ignore[arg-type]
        "no-iat": jwt.encode({"sub": "ana", "role": "admin", "exp": 4102444800}, JWT_SECRET),
        "too-long": mint_token(JWT_SECRET, "ana", "admin", timedelta(minutes=61)),
        "garbage": "not-a-jwt",
    }
    for name, bad in bad_tokens.items():
        for path in paths("ana", "p-ana"):
            response = await get(w, path, bad)
            assert response.status_code == 401, (name, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            # The same answer whatever is wrong: why is logged, not told.
            assert response.json() == {"detail": "unauthorized"}, (name, path)
    async with httpx.AsyncClient(base_url=w.worker.base_url) as client:
        basic = await client.get("/api/v1/wallets/ana", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401

    ana = token("ana")
    for path in paths("ana", "p-ana"):
        assert (await get(w, path, ana)).status_code == 200, path
    for path in paths("bo", "p-bo")[:3]:
        response = await get(w, path, ana)
        assert response.status_code == 403, (path, response.text)
    assert (await get(w, "/api/v1/payments/p-bo", ana)).status_code == 404
    for role in ("admin", "service"):
        for path in (*paths("ana", "p-ana"), *paths("bo", "p-bo")):
            assert (await get(w, path, token("ops", role))).status_code == 200, (role, path)
    for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await get(w, open_path, None)).status_code == 200, open_path


async def test_bad_limits_cursors_and_filters_are_400_never_500(reader: RunningWorker) -> None:
    w, ana, admin = reader, token("ana"), token("ops", "admin")
    issued = await _a_cursor(w, admin)
    checks: list[tuple[str, dict[str, Any]]] = [
        ("/api/v1/wallets/ana/transactions", {"limit": 0}),
        ("/api/v1/wallets/ana/transactions", {"limit": 101}),
        ("/api/v1/wallets/ana/transactions", {"limit": "ten"}),
        ("/api/v1/students/ana/payments", {"limit": -1}),
        ("/api/v1/students/ana/payments", {"status": "paid"}),
        ("/api/v1/wallets/ana/transactions", {"cursor": "garbage"}),
        ("/api/v1/wallets/ana/transactions", {"cursor": "a.b"}),
        ("/api/v1/wallets/ana/transactions", {"cursor": "é" * 10}),
        ("/api/v1/wallets/ana/transactions", {"cursor": "x" * 600}),
        ("/api/v1/wallets/ana/transactions", {"cursor": issued[:-3] + "AAA"}),  # tampered
        ("/api/v1/wallets/bo/transactions", {"cursor": issued}),  # another student's list
        ("/api/v1/students/ana/payments", {"cursor": issued}),  # another route's cursor
        ("/api/v1/wallets/" + "x" * 129, {}),
    ]
    for path, params in checks:
        response = await get(w, path, admin, **params)
        assert response.status_code == 400, (path, params, response.text)
        assert response.json()["detail"]
    assert (await get(w, "/api/v1/wallets/ana/transactions", ana, cursor=issued)).status_code == 200


async def _a_cursor(w: RunningWorker, bearer: str) -> str:
    """A genuine cursor of ana's ledger (written straight to the database, then paged)."""
    conn = await asyncpg.connect(w.database_url)
    try:
        await conn.execute(
            "INSERT INTO coin_wallets (student_id, balance, lifetime_earned) VALUES ('ana', 2, 2)"
        )
        await conn.execute(
            "INSERT INTO coin_transactions (transaction_id, student_id, type, reference_id,"
            " amount, balance_after, source_event_id) VALUES"
            " (gen_random_uuid(), 'ana', 'referral', 'r1', 1, 1, 'e1'),"
            " (gen_random_uuid(), 'ana', 'referral', 'r2', 1, 2, 'e2')"
        )
    finally:
        await conn.close()
    page = await ok(w, "/api/v1/wallets/ana/transactions", bearer, limit=1)
    cursor: str = page["next_cursor"]
    return cursor


async def test_reads_have_their_own_pool_and_time_out_without_holding_the_consumer(
    reader: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, admin = reader, token("ops", "admin")
    conn = await asyncpg.connect(w.database_url)
    try:
        async with conn.transaction():
            # Hold every read of payments; the coin pipeline does not touch the table.
            await conn.execute("LOCK TABLE payments IN ACCESS EXCLUSIVE MODE")
            reads = [
                asyncio.create_task(get(w, "/api/v1/students/ana/payments", admin))
                for _ in range(6)
            ]
            await send(producer, w.prefix, "course.completed", completed("cy", "c-1"), key="cy")
            await w.results("coins.credited", at_least=1)  # the consumer went on meanwhile
            answers = await asyncio.gather(*reads)
            readers = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND datname = current_database()",
                "payment-worker-reads",
            )
    finally:
        await conn.close()
    # SIDECAR_STATEMENT_TIMEOUT_MS=500: the blocked reads were cancelled and answered 503.
    assert {a.status_code for a in answers} == {503}
    assert all(a.headers["retry-after"] for a in answers)
    assert 1 <= readers <= 2  # SIDECAR_DB_POOL_SIZE
    assert (await get(w, "/api/v1/students/ana/payments", admin)).status_code == 200


async def test_requests_are_counted_by_route_and_status(reader: RunningWorker) -> None:
    w = reader
    await get(w, "/api/v1/wallets/ana", token("ana"))
    await get(w, "/api/v1/wallets/bo", token("ana"))
    await get(w, "/api/v1/wallets/ana", None)
    text = (await get(w, "/metrics", None)).text
    for status_code in ("200", "403", "401"):
        line = (
            'payment_worker_http_requests_total{method="GET",'
            f'route="/api/v1/wallets/{{student_id}}",status="{status_code}"}} 1.0'
        )
        assert line in text
    count = (
        'payment_worker_http_request_duration_seconds_count{route="/api/v1/wallets/{student_id}"}'
    )
    assert f"{count} 3.0" in text


async def test_the_openapi_document_holds_up_under_schemathesis(
    reader: RunningWorker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    w = reader
    await credit_courses(w, producer, "ana", range(3))
    await open_payment(w, producer, "p-1", "ana")
    document = await ok(w, "/openapi.json", token("ops", "admin"))
    assert set(ROUTES) <= set(document["paths"])
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": document["components"]["securitySchemes"]["HTTPBearer"]["description"],
    }  # fmt: skip
    for route in ROUTES:
        operation = document["paths"][route]["get"]
        assert operation["security"] == [{"HTTPBearer": []}]
        assert {"200", "400", "401", "503"} <= set(operation["responses"])
        assert "422" not in operation["responses"]

    # The fuzzer: every check but positive_data_acceptance, which assumes any string the schema
    # allows is a valid cursor; an opaque signed cursor is valid only if this service issued it.
    schemathesis = Path(sys.executable).with_name("schemathesis")
    process = await asyncio.create_subprocess_exec(
        str(schemathesis), "run", f"{w.worker.base_url}/openapi.json",
        "--header", f"Authorization: Bearer {token('ops', 'admin')}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", "40", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path, env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-6000:]
    assert "generated" in report


async def test_the_rate_limit_setting_holds_per_subject(start_worker: StartWorker) -> None:
    w = await start_worker(SIDECAR_RATE_LIMIT_PER_MINUTE="3")
    ana, bo = token("ana"), token("bo")
    codes = [(await get(w, "/api/v1/wallets/ana", ana)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = await get(w, "/api/v1/wallets/ana", ana)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one request every 20 s
    assert (await get(w, "/api/v1/wallets/bo", bo)).status_code == 200
    assert (await get(w, "/healthz", None)).status_code == 200
    metrics = (await get(w, "/metrics", None)).text
    assert 'payment_worker_http_rate_limited_total{role="student"} 2.0' in metrics
