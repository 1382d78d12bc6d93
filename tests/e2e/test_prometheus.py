"""A real Prometheus (Debian's server, `scripts/stack tools`) scraping a live worker every
second with the alert rules loaded: the counters arrive, and the down alert is raised when the
worker stops (its firing a minute later is promtool's test, tests/unit/test_alerts.py)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import StartWorker
from tests.events import completed, send
from tests.support import eventually, free_port

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Any]:
    """Starts a Prometheus on loopback; `start(target)` scrapes `target` each second."""
    server = shutil.which("prometheus")
    assert server, "the Prometheus server is missing: `scripts/stack tools` installs it"
    processes: list[asyncio.subprocess.Process] = []
    opened: list[Any] = []  # log files and clients, closed afterwards

    async def start(target: str) -> httpx.AsyncClient:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": "payment-worker", "static_configs": [{"targets": [target]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        opened.append(log)
        process = await asyncio.create_subprocess_exec(
            server,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=log,
            stderr=log,
        )
        processes.append(process)
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)
        opened.append(client)

        async def ready() -> None:
            assert process.returncode is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                response = await client.get("/-/ready")
            except httpx.TransportError as exc:
                raise AssertionError(f"not answering yet: {exc}") from exc
            assert response.status_code == 200

        await eventually(ready, within=30, interval=0.2)
        return client

    yield start
    for process in processes:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 20)
        if process.returncode is None:
            process.kill()
            await process.wait()
    for thing in opened:
        if isinstance(thing, httpx.AsyncClient):
            await thing.aclose()
        else:
            thing.close()


async def value(client: httpx.AsyncClient, promql: str) -> float:
    """The one value `promql` has now (an AssertionError while it has none)."""
    response = await client.get("/api/v1/query", params={"query": promql})
    assert response.status_code == 200, response.text
    result = response.json()["data"]["result"]
    assert len(result) == 1, (promql, result)
    return float(result[0]["value"][1])


async def test_prometheus_scrapes_the_counters_and_raises_the_down_alert_when_it_stops(
    start_worker: StartWorker, producer: AIOKafkaProducer, prometheus: Any
) -> None:
    w = await start_worker()
    client = await prometheus(f"127.0.0.1:{w.worker.port}")
    for n in range(6):
        await send(producer, w.prefix, "course.completed", completed(f"s{n}", "c-1"), key=f"s{n}")

    async def counted() -> None:
        assert await value(client, 'sum(payment_worker_messages_total{outcome="applied"})') == 6
        assert await value(client, 'sum(payment_worker_coins_total{direction="credited"})') == 600
        assert await value(client, 'up{job="payment-worker"}') == 1

    await eventually(counted, within=60)
    response = await client.get("/api/v1/rules")
    loaded = {
        rule["name"]: rule for group in response.json()["data"]["groups"] for rule in group["rules"]
    }
    assert loaded["PaymentWorkerDown"]["duration"] == 60  # `for: 1m`, as shipped

    assert await w.worker.stop() == 0, w.worker.log_tail()

    # The shipped rule's expression holds on the first missed scrape: the alert is pending, and
    # Prometheus fires it once that has lasted its `for` (the firing after a minute of misses is
    # tested by promtool, in tests/unit/test_alerts.py, without a minute's wait here).
    async def down_alert_pending() -> None:
        alerts = (await client.get("/api/v1/alerts")).json()["data"]["alerts"]
        raised = {a["labels"]["alertname"]: a["state"] for a in alerts}
        assert raised.get("PaymentWorkerDown") == "pending", alerts

    await eventually(down_alert_pending, within=60, interval=0.5)
