"""The alert rules (deploy/prometheus/alerts.yml): valid, unit-tested by promtool, on metrics
the worker exports, each with its runbook in docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from worker.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOKS = ROOT / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `scripts/stack tools` installs it (the test command does)"
    return subprocess.run([found, *args], capture_output=True, text=True, check=False)


def alerts() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def exported() -> set[str]:
    """Every sample name the worker's registry can export."""
    names: set[str] = set()
    for family in Metrics(CollectorRegistry()).registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_when_it_should_and_only_then() -> None:
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    named = {test["alert_rule_test"][0]["alertname"] for test in yaml.safe_load(
        RULE_TESTS.read_text())["tests"]}  # fmt: skip
    assert named == {rule["alert"] for rule in alerts()}  # every alert has its tests


def test_the_rules_name_only_metrics_the_worker_exports() -> None:
    used = {
        name
        for rule in alerts()
        for name in re.findall(r"\b(?:payment_worker|process)_\w+", str(rule["expr"]))
    }
    assert used
    assert used <= exported(), used - exported()


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: str(rule["alert"]))
def test_every_alert_has_a_runbook(rule: dict[str, object]) -> None:
    name = str(rule["alert"])
    annotations = rule["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["runbook"] == f"docs/operations.md#{name.lower()}"
    headings = re.findall(r"^### (\w+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    assert name in headings
