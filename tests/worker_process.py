"""Start the real worker as a subprocess, as an operator would, and talk to it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.kafka import new_prefix
from tests.support import eventually, free_port

JWT_SECRET = "tests-only-jwt-secret-of-32-bytes-or-more"


@dataclass
class WorkerProcess:
    process: asyncio.subprocess.Process
    port: int
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            return await client.get(path)

    async def wait_ready(self, within: float = 60) -> None:
        async def ready() -> None:
            assert self.process.returncode is None, self.log_tail()
            try:
                response = await self.get("/readyz")
            except httpx.TransportError as exc:
                raise AssertionError(f"sidecar not answering: {exc}") from exc
            assert response.status_code == 200, response.text

        await eventually(ready, within=within, interval=0.2)

    async def stop(self, sig: int = signal.SIGTERM, within: float = 30) -> int:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), within)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def worker_env(database_url: str, kafka_bootstrap: str, **overrides: str) -> dict[str, str]:
    """The environment of an isolated worker: its own topics (by prefix) and consumer group."""
    run = uuid.uuid4().hex[:10]
    env = {
        "PATH": os.environ["PATH"],
        "DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": new_prefix(run),
        "KAFKA_CONSUMER_GROUP": f"g{run}",
        "KAFKA_TOPIC_PARTITIONS": "3",
        "SIDECAR_JWT_SECRET": JWT_SECRET,
        "SIDECAR_HOST": "127.0.0.1",
        "WORKER_BATCH_MAX_WAIT_MS": "50",
        "LOG_LEVEL": "INFO",
    }
    env.update(overrides)
    return env


@asynccontextmanager
async def running_worker(env: dict[str, str], log_dir: Path) -> AsyncIterator[WorkerProcess]:
    """A worker process for the duration of the block; killed if it outlives it."""
    port = free_port(int(env.get("WORKER_PROCESSES", "1")))  # process i serves on port + i
    env = {**env, "PAYMENT_SERVICE_PORT": str(port)}
    log_path = log_dir / f"worker-{port}.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "worker", "run", env=env, stdout=log, stderr=log
        )
    worker = WorkerProcess(process, port, log_path, env)
    try:
        yield worker
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
