"""PostgreSQL goes away and comes back: readiness follows it and the worker recovers alone."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Stack
from tests.faults.conftest import PrivatePostgres
from tests.support import eventually
from tests.worker_process import running_worker, worker_env


async def test_readyz_turns_503_while_postgres_is_down_and_200_when_back(
    stack: Stack, private_postgres: PrivatePostgres, tmp_path: Path
) -> None:
    env = worker_env(private_postgres.database_url, stack.kafka_bootstrap)
    async with running_worker(env, tmp_path) as worker:
        await worker.wait_ready()

        private_postgres.run("down")

        async def not_ready() -> None:
            response = await worker.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"]["database"] is False

        await eventually(not_ready, within=30)
        assert worker.process.returncode is None, "the worker must ride out the outage"

        private_postgres.run("up")
        await worker.wait_ready(within=60)
        assert await worker.stop() == 0, worker.log_tail()
