"""docker-compose.yml cannot run here; these checks keep it in step with the code."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stack.settings import DEFAULT_STRIPE_MOCK_VERSION
from tests.support import ROOT
from tests.unit.test_alerts import promtool
from worker.settings import Settings


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed compose file, shared by the checks below."""
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_has_kafka_postgres_and_worker_with_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "postgres", "worker"} <= set(services)
    for name in ("kafka", "postgres"):
        assert services[name]["healthcheck"]["test"]
    assert (ROOT / "Dockerfile").read_text().count("HEALTHCHECK") == 1


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "ZOOKEEPER" not in " ".join(env)


def test_worker_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    depends = compose["services"]["worker"]["depends_on"]
    assert depends == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }


def test_stripe_mock_is_the_pinned_version_behind_a_profile(compose: dict[str, Any]) -> None:
    """Opt-in (real deployments use Stripe's API) and the same version scripts/stack builds."""
    service = compose["services"]["stripe-mock"]
    assert service["image"] == f"stripe/stripe-mock:{DEFAULT_STRIPE_MOCK_VERSION}"
    assert service["profiles"] == ["stripe-mock"]
    assert "stripe-mock" not in compose["services"]["worker"]["depends_on"]
    assert compose["services"]["worker"]["environment"]["STRIPE_API_BASE"] == "${STRIPE_API_BASE:-}"


def test_worker_environment_names_are_settings(compose: dict[str, Any]) -> None:
    names = set(compose["services"]["worker"]["environment"])
    fields = {name.upper() for name in Settings.model_fields}
    assert names <= fields, names - fields


def test_worker_reaches_services_by_their_compose_names(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert env["KAFKA_BOOTSTRAP_SERVERS"].split(":")[0] == "kafka"
    assert "@postgres:5432/" in env["DATABASE_URL"]
    postgres = compose["services"]["postgres"]["environment"]
    assert f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@" in env["DATABASE_URL"]


def test_published_ports_are_bound_to_loopback(compose: dict[str, Any]) -> None:
    published = [
        (name, str(port)) for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]  # fmt: skip
    assert published
    assert all(port.startswith("127.0.0.1:") for _, port in published), published


def test_development_mode_is_off_unless_asked_for(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    assert env["SIDECAR_DEV_MODE"] == "${SIDECAR_DEV_MODE:-false}"
    assert env["SIDECAR_JWT_SECRET"] == "${SIDECAR_JWT_SECRET:-}"  # no default secret


def test_prometheus_is_optional_and_loads_the_tested_rules(compose: dict[str, Any]) -> None:
    service = compose["services"]["prometheus"]
    assert service["profiles"] == ["prometheus"]
    assert service["volumes"] == ["./deploy/prometheus:/etc/prometheus/payment-worker:ro"]
    assert service["command"] == ["--config.file=/etc/prometheus/payment-worker/prometheus.yml"]
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    loaded = yaml.safe_load(config.read_text())
    assert loaded["rule_files"] == ["alerts.yml"]  # beside it, as mounted
    [job] = loaded["scrape_configs"]
    assert job == {"job_name": "payment-worker", "static_configs": [{"targets": ["worker:8080"]}]}
    checked = promtool("check", "config", str(config))  # the rules are checked with it
    assert checked.returncode == 0, checked.stdout + checked.stderr
