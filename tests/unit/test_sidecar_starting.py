"""While the worker starts, the sidecar already answers: alive, not ready, reads say 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from worker.metrics import Metrics, new_registry
from worker.sidecar.app import Backends, create_app
from worker.sidecar.auth import TokenRules, mint_token

SECRET = "a-test-secret-of-at-least-thirty-two-bytes"


@pytest.fixture
async def starting() -> AsyncIterator[httpx.AsyncClient]:
    backends: asyncio.Future[Backends] = asyncio.get_running_loop().create_future()
    app = create_app(backends, Metrics(new_registry()), TokenRules((SECRET,)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sidecar"
    ) as client:
        yield client


async def test_alive_and_not_ready_before_the_worker_has_opened_its_parts(
    starting: httpx.AsyncClient,
) -> None:
    assert (await starting.get("/healthz")).status_code == 200
    ready = await starting.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {"database": False, "kafka_group": False},
    }
    assert (await starting.get("/metrics")).status_code == 200


async def test_metrics_can_be_asked_for_by_sample_name() -> None:
    app = create_app(asyncio.Future(), Metrics(new_registry()), TokenRules((SECRET,)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sidecar"
    ) as client:

        async def samples(*names: str) -> list[str]:
            response = await client.get("/metrics", params=[("name[]", n) for n in names])
            assert response.status_code == 200
            return [line for line in response.text.splitlines() if not line.startswith("#")]

        everything = await samples()
        assert "payment_worker_outbox_backlog 0.0" in everything
        assert await samples("payment_worker_outbox_backlog", "no_such_sample") == [
            "payment_worker_outbox_backlog 0.0"
        ]
        # The process collector's samples too (it has no `describe`).
        [cpu] = await samples("process_cpu_seconds_total")
        assert cpu.startswith("process_cpu_seconds_total ")

        # A blank name asks for nothing in particular: everything, as with no name.
        def names(lines: list[str]) -> set[str]:
            return {line.split("{")[0].split(" ")[0] for line in lines}

        # (Requests made since the first add the sidecar's HTTP samples: compare with a new one.)
        assert names(await samples("")) == names(await samples())


async def test_reads_check_the_token_first_then_say_try_again(
    starting: httpx.AsyncClient,
) -> None:
    assert (await starting.get("/api/v1/payments/pay-1")).status_code == 401
    token = mint_token(SECRET, "ops", "admin", timedelta(minutes=5))
    response = await starting.get(
        "/api/v1/payments/pay-1", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
