"""WORKER_PROCESSES: what each process of `run` is given (the processes: tests/e2e)."""

from __future__ import annotations

from worker.processes import child_environment
from worker.settings import Settings


def test_each_process_runs_alone_on_its_own_port_with_the_rest_of_the_environment() -> None:
    settings = Settings(worker_processes=3, payment_service_port=9000)
    base = {"DATABASE_URL": "postgresql://db/payments", "WORKER_PROCESSES": "3", "X": "y"}
    expected = [
        {"DATABASE_URL": "postgresql://db/payments", "WORKER_PROCESSES": "1", "X": "y",
         "PAYMENT_SERVICE_PORT": port}
        for port in ("9000", "9001", "9002")
    ]  # fmt: skip
    assert [child_environment(settings, i, base) for i in range(3)] == expected
    assert base["WORKER_PROCESSES"] == "3"  # the supervisor's own is left as it was
