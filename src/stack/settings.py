"""The stack's knobs (environment variables) read once into a frozen Settings, and the app's
environment that points at the stack."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stack.process import StackError

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_KAFKA_VERSION = "4.4.0"
DEFAULT_KAFKA_HEAP = "-Xms128m -Xmx512m"
DEFAULT_STRIPE_MOCK_VERSION = "v0.203.0"
DEFAULT_PORTS = {
    "KAFKA_PORT": 9092,
    "KAFKA_CONTROLLER_PORT": 9093,
    "KAFKA_SASL_PORT": 9094,
    "PG_PORT": 5432,
    "STRIPE_MOCK_PORT": 12111,
    "STRIPE_MOCK_HTTPS_PORT": 12112,
}
PG_ROLE = PG_DB = "payments"
PG_PASSWORD = "payments"  # noqa: S105 - the local stack's development password (README)

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", ""})
# Unix socket paths are limited to ~107 bytes; PostgreSQL appends ".s.PGSQL.<port>".
SOCKET_PATH_LIMIT = 100


@dataclass(frozen=True)
class Settings:
    """Every path and port of one stack, so that several (e.g. a test's private one) can run
    side by side. A `*_elsewhere` value is the URL of a service on another host: the stack
    leaves that service alone."""

    repo_root: Path
    stack_dir: Path
    stack_cache: Path
    kafka_version: str
    kafka_heap: tuple[str, ...]
    stripe_mock_version: str
    kafka_port: int
    kafka_controller_port: int
    kafka_sasl_port: int  # the SASL/SCRAM listener, whose clients the broker's ACLs bind
    pg_port: int
    stripe_mock_port: int
    stripe_mock_https_port: int
    stripe_mock_scheme: str  # of STRIPE_API_BASE: https picks stripe-mock's HTTPS port
    kafka_elsewhere: str | None
    database_elsewhere: str | None
    stripe_elsewhere: str | None

    @property
    def kafka_dir(self) -> Path:
        return self.stack_dir / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.stack_cache / f"kafka-{self.kafka_version}" / "libs"

    @property
    def pg_dir(self) -> Path:
        return self.stack_dir / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "data"

    @property
    def pg_socket_dir(self) -> Path:
        """`postgres/sock`, or for a deep STACK_DIR a per-stack directory under /tmp."""
        socket_dir = self.pg_dir / "sock"
        if len(str(socket_dir)) + len(str(self.pg_port)) + 12 > SOCKET_PATH_LIMIT:
            digest = hashlib.md5(os.fsencode(self.stack_dir), usedforsecurity=False)
            return Path(f"/tmp/stack-pg-{digest.hexdigest()[:12]}")  # noqa: S108 - per stack
        return socket_dir

    @property
    def stripe_mock_dir(self) -> Path:
        return self.stack_dir / "stripe-mock"

    @property
    def stripe_mock_bin(self) -> Path:
        return self.stack_cache / f"stripe-mock-{self.stripe_mock_version}" / "bin" / "stripe-mock"

    @property
    def kafka_sasl_address(self) -> str:
        return f"127.0.0.1:{self.kafka_sasl_port}"

    def app_env(self) -> dict[str, str]:
        """KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and STRIPE_API_BASE for the app: this stack's
        addresses, or the given URL of a service that runs elsewhere; and, when the stack runs
        Kafka, KAFKA_SASL_LISTENER: the address of its SASL/SCRAM listener (for the ACL
        tests, and for trying the worker with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT)."""
        stripe_port = self.stripe_mock_port
        if self.stripe_mock_scheme == "https":
            stripe_port = self.stripe_mock_https_port
        own_database = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/{PG_DB}"
        sasl = {} if self.kafka_elsewhere else {"KAFKA_SASL_LISTENER": self.kafka_sasl_address}
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_elsewhere or f"127.0.0.1:{self.kafka_port}",
            "DATABASE_URL": self.database_elsewhere or own_database,
            "STRIPE_API_BASE": self.stripe_elsewhere
            or f"{self.stripe_mock_scheme}://127.0.0.1:{stripe_port}",
            **sasl,
        }


def env(environ: Mapping[str, str]) -> dict[str, str]:
    """What `scripts/stack env` exports, for code that would rather not parse its output."""
    return load(environ).app_env()


def redact_password(url: str) -> str:
    """postgresql://user:secret@host/db -> postgresql://user:***@host/db, for messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url, count=1)


def split_host_port(text: str) -> tuple[str, str]:
    """Splits host:port, [v6]:port or a bare host; the port may be empty."""
    if text.startswith("["):
        inside, bracket, after = text.partition("]")
        return inside[1:], after.removeprefix(":") if bracket else text
    if ":" in text:
        host, _, port = text.rpartition(":")
        return host, port
    return text, ""


def _after_scheme(url: str) -> str:
    return url.partition("://")[2] if "://" in url else url


def _url_host_port(url: str, ends: str) -> tuple[str, str]:
    """The host and port of a URL's authority, which ends at the first of `ends`."""
    authority = re.split(f"[{re.escape(ends)}]", _after_scheme(url), maxsplit=1)[0]
    return split_host_port(authority.rpartition("@")[2])


def load(environ: Mapping[str, str], repo_root: Path = REPO_ROOT) -> Settings:
    """Reads the knobs; an empty variable counts as unset. A local URL's port is used unless
    the *_PORT knob is set (an https:// STRIPE_API_BASE gives the HTTPS port)."""

    def get(name: str) -> str:
        return environ.get(name) or ""

    ports = {name: get(name) for name in DEFAULT_PORTS}

    kafka_elsewhere = None
    if servers := get("KAFKA_BOOTSTRAP_SERVERS"):
        host, port = split_host_port(_after_scheme(servers.split(",")[0]))
        if host not in LOCAL_HOSTS:
            kafka_elsewhere = servers
        elif not ports["KAFKA_PORT"]:
            ports["KAFKA_PORT"] = port

    database_elsewhere = None
    if database_url := get("DATABASE_URL"):
        host, port = _url_host_port(database_url, "/?")
        if host not in LOCAL_HOSTS:
            database_elsewhere = database_url
        elif not ports["PG_PORT"]:
            ports["PG_PORT"] = port

    stripe_elsewhere, stripe_scheme = None, "http"
    if api_base := get("STRIPE_API_BASE"):
        host, port = _url_host_port(api_base, "/?#")
        if host not in LOCAL_HOSTS:
            stripe_elsewhere = api_base
        elif api_base.startswith("https://"):
            stripe_scheme = "https"
            if not ports["STRIPE_MOCK_HTTPS_PORT"]:
                ports["STRIPE_MOCK_HTTPS_PORT"] = port
        elif not ports["STRIPE_MOCK_PORT"]:
            ports["STRIPE_MOCK_PORT"] = port

    numbers = {
        name: _port(name, ports[name] or str(default)) for name, default in DEFAULT_PORTS.items()
    }
    _refuse_same(numbers, "KAFKA_PORT", "KAFKA_CONTROLLER_PORT")
    _refuse_same(numbers, "KAFKA_PORT", "KAFKA_SASL_PORT")
    _refuse_same(numbers, "KAFKA_CONTROLLER_PORT", "KAFKA_SASL_PORT")
    _refuse_same(numbers, "STRIPE_MOCK_PORT", "STRIPE_MOCK_HTTPS_PORT")
    stripe_mock_version = get("STRIPE_MOCK_VERSION") or DEFAULT_STRIPE_MOCK_VERSION
    if not re.fullmatch(r"v[0-9A-Za-z.+-]+", stripe_mock_version):
        raise StackError(
            "STRIPE_MOCK_VERSION must be a module version such as "
            f"{DEFAULT_STRIPE_MOCK_VERSION}, got '{stripe_mock_version}'"
        )

    return Settings(
        repo_root=repo_root,
        stack_dir=Path(os.path.realpath(get("STACK_DIR") or repo_root / ".stack")),
        stack_cache=Path(os.path.realpath(get("STACK_CACHE") or repo_root / ".cache")),
        kafka_version=get("KAFKA_VERSION") or DEFAULT_KAFKA_VERSION,
        kafka_heap=tuple((get("KAFKA_HEAP") or DEFAULT_KAFKA_HEAP).split()),
        stripe_mock_version=stripe_mock_version,
        kafka_port=numbers["KAFKA_PORT"],
        kafka_controller_port=numbers["KAFKA_CONTROLLER_PORT"],
        kafka_sasl_port=numbers["KAFKA_SASL_PORT"],
        pg_port=numbers["PG_PORT"],
        stripe_mock_port=numbers["STRIPE_MOCK_PORT"],
        stripe_mock_https_port=numbers["STRIPE_MOCK_HTTPS_PORT"],
        stripe_mock_scheme=stripe_scheme,
        kafka_elsewhere=kafka_elsewhere,
        database_elsewhere=database_elsewhere,
        stripe_elsewhere=stripe_elsewhere,
    )


def _port(name: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise StackError(f"{name} must be a port number, got '{value}'")
    return int(value)


def _refuse_same(ports: Mapping[str, int], first: str, second: str) -> None:
    if ports[first] == ports[second]:
        raise StackError(f"{first} and {second} must differ (both {ports[first]})")
