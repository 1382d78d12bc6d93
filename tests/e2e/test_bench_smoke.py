"""The benchmark still works: a small run end to end (no timings are asserted, only that it
completes and finds the ledger the input implies)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.conftest import Stack
from tests.support import ROOT


async def test_a_small_benchmark_run_completes_with_a_correct_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.run",
        "--events", "3000", "--students", "400", "--per-event-sample", "150",
        "--loads", "0.25,0.5", "--latency-seconds", "2", "--peer-events", "300",
        "--out", str(tmp_path),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "DATABASE_URL": stack.database_url,
             "KAFKA_BOOTSTRAP_SERVERS": stack.kafka_bootstrap},
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-5000:]
    assert "ledger check: ok; per-event ledger check: ok" in report
    results = json.loads((tmp_path / "latest.json").read_text())
    assert results["ledger_check"] == "ok"
    assert results["batched"]["events_per_s"] > 0
    assert [p["offered"] > 0 for p in results["latency"]] == [True, True]
    # The floor's latency at the same loads, every event answered (else result_times waits).
    assert [p["offered"] for p in results["floor_latency"]] == [
        p["offered"] for p in results["latency"]
    ]
    assert all(p["p99_ms"] >= p["p50_ms"] >= 0 for p in results["floor_latency"])
    # And at the same shares of the floor's own maximum.
    floor_max = results["raw_e2e"]["events_per_s"]
    assert [p["offered"] for p in results["floor_latency_own"]] == [
        floor_max * 0.25,
        floor_max * 0.5,
    ]
    # Each point had its full share of events (a short workload would cut them silently).
    assert [p["events"] for p in results["floor_latency_own"]] == [
        int(p["offered"] * 2) for p in results["floor_latency_own"]
    ]
    # Both maxima again, fed as they run, and the latency at the same shares of those.
    assert results["beside"]["worker"]["check"] == "ok"
    for latency_key, whose in (("latency_beside", "worker"), ("floor_latency_beside", "floor")):
        fed = results["beside"][whose]["events_per_s"]
        assert [p["offered"] for p in results[latency_key]] == [fed * 0.25, fed * 0.5]
        assert all(p["p99_ms"] >= p["p50_ms"] >= 0 for p in results[latency_key])
    assert results["processes"]["check"] == "ok"  # two worker processes in one group
    assert results["processes"]["running"] == 2  # both, under one `run` (WORKER_PROCESSES)
    assert results["raw_e2e"]["events_per_s"] > 0  # the floor, alone and in a group of two
    assert results["raw_e2e_processes"]["events_per_s"] > 0
    # The floor with the contract's reads, which raises if they missed wallets or payments.
    assert results["raw_e2e_reads"]["events_per_s"] > 0
    # Its own process's CPU; PostgreSQL's is 0 when the suite runs against a remote database.
    assert results["raw_e2e_reads"]["cpu_us_per_event"]["worker"] > 0
    peers = results["peers"]
    assert [peers[name]["check"] for name in ("per message", "batched", "worker")] == ["ok"] * 3
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
