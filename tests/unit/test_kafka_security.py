"""Kafka security settings (CONTRACT section 8): an incomplete or contradictory set stops the
start with one line naming the variable, and every client gets the same connection options."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from worker.messaging.clients import connection
from worker.settings import ConfigError, load_settings

SASL = {
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "payment-worker",
    "KAFKA_SASL_PASSWORD": "a-kafka-password-never-shown",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith(("PAYMENT_", "COIN_", "KAFKA_", "SIDECAR_", "WORKER_", "DATABASE_")):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key, made by openssl, and a file that is not PEM."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    openssl = shutil.which("openssl") or "openssl"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=payment-worker", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    junk = folder / "junk.pem"
    junk.write_text("not a certificate\n")
    return {"cert": cert, "key": key, "junk": junk}


def given(monkeypatch: pytest.MonkeyPatch, **variables: str | Path) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, str(value))


def config_error(monkeypatch: pytest.MonkeyPatch, **variables: str | Path) -> str:
    given(monkeypatch, **variables)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    message = str(caught.value)
    assert "\n" not in message
    assert SASL["KAFKA_SASL_PASSWORD"] not in message
    return message


def test_plaintext_is_the_default_and_carries_no_credentials() -> None:
    options = connection(load_settings(env_file=None))
    assert options == {"bootstrap_servers": "localhost:9092", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("missing", list(SASL))
@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_sasl_protocol_names_the_missing_setting(
    monkeypatch: pytest.MonkeyPatch, protocol: str, missing: str
) -> None:
    others = {name: value for name, value in SASL.items() if name != missing}
    message = config_error(monkeypatch, KAFKA_SECURITY_PROTOCOL=protocol, **others)
    assert message == (f"config error: {missing}: required with KAFKA_SECURITY_PROTOCOL={protocol}")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_without_a_sasl_protocol_are_refused(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    message = config_error(monkeypatch, KAFKA_SECURITY_PROTOCOL=protocol, **SASL)
    assert message.startswith(
        "config error: KAFKA_SASL_MECHANISM: set, but "
        f"KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL"
    )


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_a_tls_protocol_are_refused(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path], protocol: str
) -> None:
    sasl = SASL if protocol.startswith("SASL") else {}
    message = config_error(
        monkeypatch, KAFKA_SECURITY_PROTOCOL=protocol, KAFKA_SSL_CAFILE=tls_files["cert"], **sasl
    )
    assert message.startswith(
        f"config error: KAFKA_SSL_CAFILE: set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS"
    )


def test_tls_files_that_do_not_load_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path], tmp_path: Path
) -> None:
    given(monkeypatch, KAFKA_SECURITY_PROTOCOL="SSL")
    missing = config_error(monkeypatch, KAFKA_SSL_CAFILE=tmp_path / "absent.pem")
    assert missing.startswith("config error: KAFKA_SSL_CAFILE: ")
    assert config_error(monkeypatch, KAFKA_SSL_CAFILE=tls_files["junk"]).startswith(
        "config error: KAFKA_SSL_CAFILE: not a CA bundle"
    )
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(tls_files["cert"]))
    assert config_error(monkeypatch, KAFKA_SSL_KEYFILE=tls_files["key"]) == (
        "config error: KAFKA_SSL_KEYFILE: set without KAFKA_SSL_CERTFILE"
    )
    assert config_error(
        monkeypatch, KAFKA_SSL_CERTFILE=tls_files["junk"], KAFKA_SSL_KEYFILE=tls_files["key"]
    ).startswith("config error: KAFKA_SSL_CERTFILE: no certificate and key")


def test_sasl_ssl_gives_every_client_credentials_and_a_tls_context(
    monkeypatch: pytest.MonkeyPatch, tls_files: dict[str, Path]
) -> None:
    given(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="sasl_ssl",  # names are not case-sensitive
        KAFKA_BOOTSTRAP_SERVERS="kafka-1:9096,kafka-2:9096",
        KAFKA_SSL_CAFILE=tls_files["cert"],
        KAFKA_SSL_CERTFILE=tls_files["cert"],
        KAFKA_SSL_KEYFILE=tls_files["key"],
        **SASL,
    )
    options = connection(load_settings(env_file=None))
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "payment-worker"),),)
    ]
    assert options == {
        "bootstrap_servers": "kafka-1:9096,kafka-2:9096",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "payment-worker",
        "sasl_plain_password": SASL["KAFKA_SASL_PASSWORD"],
    }
