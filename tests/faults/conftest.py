"""Fixtures that start private dependencies, so a fault injected here touches no other test."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support import STACK, free_port


@dataclass(frozen=True)
class PrivatePostgres:
    env: dict[str, str]
    database_url: str

    def run(self, *args: str) -> None:
        subprocess.run([STACK, *args, "postgres"], env=self.env, check=True)


@pytest.fixture
def private_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, which the test may stop and start."""
    port = free_port()
    env = {
        **os.environ,
        "STACK_DIR": str(tmp_path_factory.mktemp("stack")),
        "PG_PORT": str(port),
    }
    env.pop("DATABASE_URL", None)
    server = PrivatePostgres(env, f"postgresql://payments:payments@127.0.0.1:{port}/payments")
    server.run("up")
    yield server
    server.run("down")
