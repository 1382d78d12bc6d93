"""The read API's rate limit: a token bucket per token subject, 429 with Retry-After."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from prometheus_client import CollectorRegistry

from worker.metrics import Metrics
from worker.sidecar.app import Backends, create_app
from worker.sidecar.auth import TokenRules, mint_token
from worker.sidecar.limits import RateLimiter

SECRET = "a-rate-limit-test-secret-of-32-bytes-or-more"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_subject_gets_its_rate_and_a_burst_of_one_minute() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock)  # one a second
    assert [limiter.take("a") for _ in range(60)] == [0.0] * 60
    assert limiter.take("a") == pytest.approx(1.0)  # empty: the next in a second
    assert limiter.take("b") == 0.0  # others have their own bucket
    clock.now += 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.take("a") == 0.0
    clock.now += 3600
    assert [limiter.take("a") for _ in range(60)] == [0.0] * 60  # refilled, never above 60


def test_the_table_stays_bounded_forgetting_the_least_recently_seen() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock, max_subjects=4)
    for subject in "abcd":
        limiter.take(subject)
    limiter.take("a")  # seen again: now the most recent
    limiter.take("e")  # five: the least recently seen half goes
    assert list(limiter._buckets) == ["d", "a", "e"]
    for n in range(1000):
        limiter.take(f"s{n}")
        assert len(limiter._buckets) <= 4


async def test_over_the_limit_the_api_says_429_with_retry_after_and_counts_it() -> None:
    clock = Clock()
    metrics = Metrics(CollectorRegistry())
    backends: asyncio.Future[Backends] = asyncio.get_running_loop().create_future()
    app = create_app(backends, metrics, TokenRules((SECRET,)), RateLimiter(2, clock))
    ana = mint_token(SECRET, "ana", "student", timedelta(minutes=5))
    bo = mint_token(SECRET, "bo", "student", timedelta(minutes=5))

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sidecar"
    ) as client:

        async def read(token: str) -> httpx.Response:
            return await client.get(
                "/api/v1/wallets/ana", headers={"Authorization": f"Bearer {token}"}
            )

        # Within the limit the request goes on (503 here: the worker is still starting).
        assert [(await read(ana)).status_code for _ in range(2)] == [503, 503]
        refused = await read(ana)
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "30"  # 2 a minute: one every 30 s
        assert (await read(bo)).status_code == 503  # another subject
        for path in ("/healthz", "/readyz", "/metrics"):  # never limited, no token needed
            assert (await client.get(path)).status_code in (200, 503)
        clock.now += 30
        assert (await read(ana)).status_code == 503
    value = metrics.registry.get_sample_value(
        "payment_worker_http_rate_limited_total", {"role": "student"}
    )
    assert value == 1
