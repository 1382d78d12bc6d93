"""Configuration: the CONTRACT's defaults, and one clear line naming a bad variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.settings import (
    ConfigError,
    Settings,
    load_settings,
    require_sidecar_secret,
    webhook_secrets,
)

CONTRACT_VARIABLES = (
    "PAYMENT_SERVICE_PORT",
    "PAYMENT_SESSION_TTL_MINUTES",
    "COIN_REWARD_COURSE_COMPLETION",
    "COIN_REWARD_REFERRAL",
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_CONSUMER_GROUP",
    "KAFKA_TOPIC_PARTITIONS",
    "DATABASE_URL",
    "SIDECAR_JWT_SECRET",
    "PAYMENT_WEBHOOK_SECRET_MOCK",
    "PAYMENT_WEBHOOK_SECRET_STRIPE",
    "PAYMENT_WEBHOOK_SECRET_RAZORPAY",
    "LOG_LEVEL",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment; start each test from none of ours."""
    for name in os.environ:
        if name.startswith(("PAYMENT_", "COIN_", "KAFKA_", "SIDECAR_", "WORKER_", "DATABASE_")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.setenv("SIDECAR_JWT_SECRET", "a-settings-test-secret-of-32-bytes")


def test_defaults_are_the_contracts() -> None:
    settings = load_settings(env_file=None)
    assert settings.payment_service_port == 8080
    assert settings.payment_session_ttl_minutes == 30
    assert settings.coin_reward_course_completion == 100
    assert settings.coin_reward_referral == 50
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.kafka_consumer_group == "payment-worker"
    assert settings.kafka_topic_partitions == 6
    assert settings.database_url.get_secret_value() == "postgresql://localhost:5432/payments"
    assert settings.payment_webhook_secret_mock is None
    assert settings.log_level == "INFO"
    assert settings.payment_webhook_tolerance_seconds == 300
    assert settings.payment_expiry_interval_seconds <= 60
    assert settings.coin_max_amount == 1_000_000


def test_every_contract_variable_is_a_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(CONTRACT_VARIABLES) <= fields


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COIN_REWARD_REFERRAL", "75")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = load_settings(env_file=None)
    assert settings.coin_reward_referral == 75
    assert settings.log_level == "DEBUG"


def test_dotenv_file_supplies_values(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("KAFKA_CONSUMER_GROUP=from-dotenv\n")
    assert load_settings(env_file=str(env_file)).kafka_consumer_group == "from-dotenv"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PAYMENT_SERVICE_PORT", "not-a-port"),
        ("PAYMENT_SERVICE_PORT", "70000"),
        ("PAYMENT_SESSION_TTL_MINUTES", "0"),
        ("COIN_REWARD_COURSE_COMPLETION", "-5"),
        ("COIN_REWARD_REFERRAL", "9007199254740992"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("DATABASE_URL", "mysql://localhost/payments"),
        ("LOG_LEVEL", "LOUD"),
        ("WORKER_BATCH_MAX_RECORDS", "0"),
        ("PAYMENT_SESSION_TTL_MINUTES", "-1"),
        ("PAYMENT_WEBHOOK_TOLERANCE_SECONDS", "0"),
        ("PAYMENT_EXPIRY_INTERVAL_SECONDS", "61"),  # a sweep at least once a minute
        ("COIN_EXPIRY_DAYS", "-1"),
        ("COIN_EXPIRY_DAYS", "nan"),
        ("COIN_EXPIRY_DAYS", "inf"),
        ("COIN_EXPIRY_DAYS", "36501"),  # past a century: a deadline Python may not hold
        ("COIN_EXPIRY_INTERVAL_SECONDS", "0"),
        ("PAYMENT_MOCK_URL_BASE", "ftp://pay.example"),
        ("PAYMENT_MOCK_URL_BASE", "not a url"),
        ("SIDECAR_JWT_SECRET", "short"),  # an HS256 key needs 32 bytes
        ("SIDECAR_STATEMENT_TIMEOUT_MS", "0"),
        ("SIDECAR_DB_POOL_SIZE", "0"),
        ("KAFKA_SESSION_TIMEOUT_MS", "1000"),  # the broker refuses under 6 s
        ("WORKER_FAILPOINT_AFTER_DB_COMMIT", "-1"),
        ("WORKER_PROCESSES", "0"),
        ("WORKER_PROCESSES", "65"),
        ("WORKER_CONCURRENT_BATCHES", "0"),
        ("WORKER_CONCURRENT_BATCHES", "17"),
        ("COIN_MAX_AMOUNT", "0"),
        ("COIN_MAX_AMOUNT", "9007199254740992"),
        ("PAYMENT_WEBHOOK_SECRET_MOCK", "whsec_15_bytes_"),  # at least 16 bytes
        ("PAYMENT_WEBHOOK_SECRET_STRIPE", "whsec_long_enough_one,short"),  # each of a rotation
        ("PAYMENT_WEBHOOK_SECRET_RAZORPAY", "rzp_long_enough_secret,"),  # an empty one
        ("SIDECAR_JWT_PREVIOUS_SECRET", "short"),
        ("SIDECAR_JWT_MAX_LIFETIME_MINUTES", "0"),
        ("SIDECAR_JWT_ISSUER", "x" * 256),
        ("SIDECAR_JWT_AUDIENCE", " "),  # blank: a typo, not "no audience"
    ],
)
def test_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    message = str(caught.value)
    assert message.startswith(f"config error: {variable}: ")
    assert "\n" not in message


def test_every_worker_process_needs_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_PROCESSES", "2")
    monkeypatch.setenv("PAYMENT_SERVICE_PORT", "65534")
    assert load_settings(env_file=None).worker_processes == 2  # 65534 and 65535
    monkeypatch.setenv("PAYMENT_SERVICE_PORT", "65535")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == (
        "config error: WORKER_PROCESSES: 2 processes need ports 65535 to 65536 "
        "(PAYMENT_SERVICE_PORT + i), above 65535"
    )


def test_the_pool_has_a_connection_beside_every_concurrent_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(env_file=None).worker_concurrent_batches == 2  # of a pool of 4
    monkeypatch.setenv("WORKER_CONCURRENT_BATCHES", "3")
    assert load_settings(env_file=None).worker_concurrent_batches == 3
    monkeypatch.setenv("WORKER_CONCURRENT_BATCHES", "4")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value) == (
        "config error: WORKER_DB_POOL_SIZE: 4 connections leave none beside the 4 concurrent "
        "batches (WORKER_CONCURRENT_BATCHES) for the outbox relay; at least 5"
    )


def test_sidecar_secret_is_required_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_JWT_SECRET", "")  # empty, as compose passes an unset one
    settings = load_settings(env_file=None)
    assert settings.sidecar_jwt_secret is None
    with pytest.raises(ConfigError, match=r"^config error: SIDECAR_JWT_SECRET: required"):
        require_sidecar_secret(settings)
    monkeypatch.setenv("SIDECAR_DEV_MODE", "true")
    require_sidecar_secret(load_settings(env_file=None))


def test_secret_values_never_appear_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://user:hunter2@db/payments")
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert "hunter2" not in str(caught.value)


def test_command_exits_2_with_one_line_on_bad_config(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "KAFKA_TOPIC_PARTITIONS": "many", "SIDECAR_DEV_MODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        env=env,
        cwd=tmp_path,  # no .env here
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("config error: KAFKA_TOPIC_PARTITIONS: ")


def test_run_without_sidecar_secret_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "run"],
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: SIDECAR_JWT_SECRET: ")


def test_a_previous_jwt_secret_needs_a_current_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDECAR_JWT_SECRET")
    monkeypatch.setenv("SIDECAR_JWT_PREVIOUS_SECRET", "the-previous-secret-of-32-bytes-long")
    with pytest.raises(
        ConfigError, match=r"^config error: SIDECAR_JWT_PREVIOUS_SECRET: set without"
    ):
        load_settings(env_file=None)


def test_webhook_secrets_of_a_rotation_are_split_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET_STRIPE", "whsec_the_new_one_1, whsec_the_old_one_2")
    secret = load_settings(env_file=None).payment_webhook_secret_stripe
    assert webhook_secrets(secret) == (b"whsec_the_new_one_1", b"whsec_the_old_one_2")
    assert webhook_secrets(None) == ()
