"""The Grafana dashboard (deploy/grafana/payment-worker.json): importable as it is, every
query parses, and it names only metrics the worker exports (tests/e2e/test_operations.py
checks the names against a live worker's `/metrics` too)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.unit.test_alerts import exported, promtool

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "payment-worker.json"
# Prometheus's own series, and PromQL's words, that a query may name besides the worker's.
NOT_EXPORTED = {"up"}


def queries() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (f"{panel['title']} / {target['refId']}", target["expr"])
        for panel in dashboard["panels"]
        for target in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(?:payment_worker_\w+|process_\w+|up)\b", expr))


def test_the_dashboard_is_importable_as_it_is() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "payment-worker"
    assert "id" not in dashboard  # Grafana assigns it on import
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for wanted in ("outcome", "lag", "event age", "batch size", "batch duration", "dead letters",
                   "parked", "payments by transition", "webhook refusals", "sidecar latency",
                   "sidecar requests by status"):  # fmt: skip
        assert wanted in titles, wanted


def test_every_query_parses(tmp_path: Path) -> None:
    # promtool parses recording rules' expressions as Prometheus does a panel's query.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": expr} for n, (_, expr) in enumerate(queries())
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries())} rules found" in checked.stdout


def test_every_query_names_only_metrics_the_worker_exports() -> None:
    for where, expr in queries():
        names = metric_names(expr)
        assert names, where
        assert names - NOT_EXPORTED <= exported(), (where, names - NOT_EXPORTED - exported())
