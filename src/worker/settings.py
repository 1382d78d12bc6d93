"""The worker's configuration: read once at start from the environment and `.env`."""

from __future__ import annotations

import ssl
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.assertions import AssertionKey, KeyFileError, load_keys
from worker.core.rules import CoinRules, parse_rules
from worker.sidecar.limits import DEFAULT_PER_MINUTE

JSON_SAFE_MAX = 9_007_199_254_740_991
MIN_WEBHOOK_SECRET_BYTES = 16

PositiveCoins = Annotated[int, Field(ge=1, le=JSON_SAFE_MAX)]
HttpUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+(/\S*)?$")]


class Settings(BaseSettings):
    """Every knob the worker has; field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # The CONTRACT's variables (section 8); the first four keep the old service's names.
    payment_service_port: int = Field(8080, ge=1, le=65535)
    # Minutes, as the old service had it; fractions are allowed (tests use a few seconds).
    payment_session_ttl_minutes: float = Field(30, gt=0, le=7 * 24 * 60)
    coin_reward_course_completion: PositiveCoins = 100
    coin_reward_referral: PositiveCoins = 50
    kafka_bootstrap_servers: str = "localhost:9092"
    kafka_consumer_group: str = Field("payment-worker", min_length=1, max_length=255)
    kafka_topic_partitions: int = Field(6, ge=1, le=10_000)
    database_url: SecretStr = SecretStr("postgresql://localhost:5432/payments")
    sidecar_jwt_secret: SecretStr | None = None
    # Section 8's rotation: the secret before SIDECAR_JWT_SECRET, still accepted (never used
    # to sign) until every token it signed has expired.
    sidecar_jwt_previous_secret: SecretStr | None = None
    # When set, a token must name them (`iss`, `aud`).
    sidecar_jwt_issuer: str | None = Field(None, pattern=r"^\S(.*\S)?$", max_length=255)
    sidecar_jwt_audience: str | None = Field(None, pattern=r"^\S(.*\S)?$", max_length=255)
    # A token whose `exp - iat` is longer is refused: a stolen token is useful this long at most.
    sidecar_jwt_max_lifetime_minutes: float = Field(60, gt=0, le=7 * 24 * 60)
    # Requests per minute per token subject on the read API (a token bucket); 429 beyond it.
    sidecar_rate_limit_per_minute: int = Field(DEFAULT_PER_MINUTE, ge=1, le=1_000_000)
    payment_webhook_secret_mock: SecretStr | None = None
    payment_webhook_secret_stripe: SecretStr | None = None
    payment_webhook_secret_razorpay: SecretStr | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # The largest amount one adjustment, redemption or referral override may state.
    coin_max_amount: PositiveCoins = 1_000_000
    # The provider of new payments; a `payment.requested` may name another (CONTRACT section 5).
    payment_provider: Literal["mock", "stripe", "razorpay"] = "mock"
    stripe_api_key: SecretStr | None = None
    stripe_api_base: HttpUrl | None = None  # Stripe's own API; tests point it at stripe-mock
    razorpay_key_id: str | None = Field(None, min_length=1, max_length=100)
    razorpay_key_secret: SecretStr | None = None
    razorpay_api_base: HttpUrl | None = None  # Razorpay's own API
    # One attempt of one provider call; a call that takes longer is tried again later.
    payment_gateway_timeout_seconds: float = Field(10.0, gt=0, le=120)

    # The project's own (documented in the README).
    sidecar_host: str = "0.0.0.0"  # noqa: S104 - a sidecar is reached from outside its container
    sidecar_dev_mode: bool = False
    kafka_topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    kafka_topic_replication_factor: int = Field(1, ge=1, le=32)
    # How soon the group notices a worker that died without leaving (the broker allows 6..1800 s).
    kafka_session_timeout_ms: int = Field(30_000, ge=6_000, le=1_800_000)
    # Fault tests only: SIGKILL this process right after its Nth batch's database commit,
    # before the batch's offset commit (0: never). Proves that window loses and doubles nothing.
    worker_failpoint_after_db_commit: int = Field(0, ge=0)
    worker_batch_max_records: int = Field(500, ge=1, le=100_000)
    worker_batch_max_wait_ms: int = Field(200, ge=0, le=60_000)
    worker_db_pool_size: int = Field(4, ge=2, le=100)
    # Batches one process applies at once, each for its share of the partitions (partition
    # number modulo this): one waits on the database while another is decoded and decided.
    worker_concurrent_batches: int = Field(2, ge=1, le=16)
    worker_shutdown_grace_seconds: float = Field(10.0, ge=0, le=600)
    # Worker processes `run` starts, in one consumer group (worker.processes); process i serves
    # its sidecar on PAYMENT_SERVICE_PORT + i.
    worker_processes: int = Field(1, ge=1, le=64)
    sidecar_db_pool_size: int = Field(2, ge=1, le=50)
    sidecar_statement_timeout_ms: int = Field(2000, ge=1, le=600_000)
    payment_webhook_tolerance_seconds: int = Field(300, ge=1, le=86_400)
    # At most a minute, so an unpaid session is expired within a minute of its deadline.
    payment_expiry_interval_seconds: float = Field(10.0, gt=0, le=60)
    payment_mock_url_base: HttpUrl = "https://mock-gateway.invalid/checkout"
    # Provider calls in flight at once, per provider.
    payment_gateway_concurrency: int = Field(8, ge=1, le=100)
    # Where a provider sends the student after paying (Stripe `success_url`, Razorpay
    # `callback_url`); unset: the provider's own page.
    payment_return_url: HttpUrl | None = None
    # How every Kafka client of the worker connects (CONTRACT section 8): checked together by
    # `_kafka_security_is_complete`.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = Field(None, min_length=1, max_length=255)
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None
    # Coin rules (CONTRACT section 10): course rewards by tier, student tiers, streaks (TOML).
    coin_rules_file: FilePath | None = None
    # Days after which a credit's coins expire (CONTRACT section 10); 0: never. Fractions are
    # allowed (tests use a minute); at most a hundred years.
    coin_expiry_days: float = Field(0, ge=0, le=36_500)
    # How often each worker sweeps for expired lots.
    coin_expiry_interval_seconds: float = Field(60, gt=0, le=86_400)
    # Files (comma-separated) of the public keys admin assertions are checked with: JWKS or PEM.
    # Set: an adjustment or refund needs an assertion by one of them (CONTRACT section 8).
    admin_assertion_public_keys: str | None = Field(None, min_length=1, max_length=10_000)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "sidecar_jwt_secret",
        "sidecar_jwt_previous_secret",
        "sidecar_jwt_issuer",
        "sidecar_jwt_audience",
        "payment_webhook_secret_mock",
        "payment_webhook_secret_stripe",
        "payment_webhook_secret_razorpay",
        "stripe_api_key",
        "stripe_api_base",
        "razorpay_key_id",
        "razorpay_key_secret",
        "razorpay_api_base",
        "payment_return_url",
        "kafka_sasl_mechanism",
        "kafka_sasl_username",
        "kafka_sasl_password",
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "admin_assertion_public_keys",
        "coin_rules_file",
        mode="before",
    )
    @classmethod
    def _empty_secret_is_none(cls, value: object) -> object:
        # An empty variable (as compose passes `${VAR:-}`) means "no secret", never "".
        return None if value == "" else value

    @field_validator(
        "payment_webhook_secret_mock",
        "payment_webhook_secret_stripe",
        "payment_webhook_secret_razorpay",
    )
    @classmethod
    def _webhook_secrets_are_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # Several secrets, comma-separated, during a rotation (CONTRACT section 8).
        if value is not None:
            for number, secret in enumerate(value.get_secret_value().split(","), start=1):
                if not secret.strip():
                    raise ValueError(f"secret {number} is empty (a comma too many?)")
                if len(secret.strip().encode()) < MIN_WEBHOOK_SECRET_BYTES:
                    raise ValueError(
                        f"secret {number} is shorter than {MIN_WEBHOOK_SECRET_BYTES} bytes "
                        "(several secrets are separated by commas)"
                    )
        return value

    @field_validator("sidecar_jwt_secret", "sidecar_jwt_previous_secret")
    @classmethod
    def _long_enough_for_hs256(cls, value: SecretStr | None) -> SecretStr | None:
        # RFC 7518 section 3.2: an HS256 key must be at least as long as the hash (32 bytes).
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError("must be at least 32 bytes long (HS256 key, RFC 7518 section 3.2)")
        return value

    @model_validator(mode="after")
    def _coin_rules_load(self) -> Self:
        if self.coin_rules_file is not None:
            try:
                read_rules(self.coin_rules_file, self.coin_max_amount)
            except ValueError as exc:
                raise ValueError(f"COIN_RULES_FILE: {exc}") from None
        return self

    @model_validator(mode="after")
    def _every_process_has_a_port(self) -> Self:
        last = self.payment_service_port + self.worker_processes - 1
        if last > 65535:  # the highest TCP port
            raise ValueError(
                f"WORKER_PROCESSES: {self.worker_processes} processes need ports "
                f"{self.payment_service_port} to {last} (PAYMENT_SERVICE_PORT + i), above 65535"
            )
        return self

    @model_validator(mode="after")
    def _pool_serves_every_batch(self) -> Self:
        if self.worker_db_pool_size <= self.worker_concurrent_batches:
            raise ValueError(
                f"WORKER_DB_POOL_SIZE: {self.worker_db_pool_size} connections leave none beside "
                f"the {self.worker_concurrent_batches} concurrent batches "
                "(WORKER_CONCURRENT_BATCHES) for the outbox relay; at least "
                f"{self.worker_concurrent_batches + 1}"
            )
        return self

    @model_validator(mode="after")
    def _previous_jwt_secret_needs_a_current_one(self) -> Self:
        if self.sidecar_jwt_previous_secret is not None and self.sidecar_jwt_secret is None:
            raise ValueError("SIDECAR_JWT_PREVIOUS_SECRET: set without SIDECAR_JWT_SECRET")
        return self

    @model_validator(mode="after")
    def _razorpay_keys_come_in_pairs(self) -> Self:
        if (self.razorpay_key_id is None) != (self.razorpay_key_secret is None):
            missing = (
                "RAZORPAY_KEY_SECRET" if self.razorpay_key_secret is None else "RAZORPAY_KEY_ID"
            )
            raise ValueError(f"{missing}: required with the other Razorpay key")
        return self

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper_kafka_names(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Self:
        """A SASL protocol needs its mechanism and credentials; SASL or TLS settings under a
        protocol that does not use them are a mistake (the connection would not be what the
        operator meant), so both stop the start, naming the variable."""
        sasl = {
            "KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
            "KAFKA_SASL_PASSWORD": self.kafka_sasl_password,
        }
        tls = {
            "KAFKA_SSL_CAFILE": self.kafka_ssl_cafile,
            "KAFKA_SSL_CERTFILE": self.kafka_ssl_certfile,
            "KAFKA_SSL_KEYFILE": self.kafka_ssl_keyfile,
        }
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            for name, value in sasl.items():
                if value is None:
                    raise ValueError(f"{name}: required with KAFKA_SECURITY_PROTOCOL={protocol}")
        elif given := [name for name, value in sasl.items() if value is not None]:
            raise ValueError(
                f"{given[0]}: set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no SASL "
                "(SASL_PLAINTEXT or SASL_SSL does)"
            )
        if not protocol.endswith("SSL"):
            if given := [name for name, value in tls.items() if value is not None]:
                raise ValueError(
                    f"{given[0]}: set, but KAFKA_SECURITY_PROTOCOL={protocol} uses no TLS "
                    "(SSL or SASL_SSL does)"
                )
            return self
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError("KAFKA_SSL_KEYFILE: set without KAFKA_SSL_CERTFILE")
        _check_tls_files(self)
        return self

    @field_validator("admin_assertion_public_keys")
    @classmethod
    def _assertion_keys_load(cls, value: str | None) -> str | None:
        if value is not None:
            read_assertion_keys(value)
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError("expected postgresql://[user[:password]@]host[:port]/database")
        return value


def _check_tls_files(settings: Settings) -> None:
    """Load the TLS files as the Kafka clients will, so that a bad one stops the start here."""
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"KAFKA_SSL_CAFILE: not a CA bundle ({exc})") from None
    if settings.kafka_ssl_certfile is not None:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(
                f"KAFKA_SSL_CERTFILE: no certificate and key in it and KAFKA_SSL_KEYFILE ({exc})"
            ) from None


@cache  # read once: checked at start, then used by the composition root
def read_rules(path: Path, max_amount: int) -> CoinRules:
    """COIN_RULES_FILE's rules; ValueError saying what is wrong with the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc}") from None
    return parse_rules(text, max_amount)


@cache  # read once: checked at start, then used by the composition root
def read_assertion_keys(files: str) -> tuple[AssertionKey, ...]:
    """The public keys in ADMIN_ASSERTION_PUBLIC_KEYS's files; ValueError saying which file
    (and key) is unusable."""
    keys = []
    for name in (part.strip() for part in files.split(",")):
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {name!r}: {exc}") from None
        try:
            keys.extend(load_keys(text, repr(name)))
        except KeyFileError as exc:
            raise ValueError(str(exc)) from None
    return tuple(keys)


class ConfigError(Exception):
    """The configuration is unusable; the message is one line naming the variable."""


def load_settings(env_file: str | None = ".env") -> Settings:
    """Build the settings, turning pydantic's report into one line per the CONTRACT."""
    try:
        return Settings(_env_file=env_file)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line: `config error: VARIABLE: what is wrong` for each problem."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}" if variable else message)
    return "config error: " + "; ".join(problems)


# Signs and checks read-API tokens when SIDECAR_DEV_MODE is on and no secret is set. It is in
# the README on purpose: anyone can mint tokens for it, so it is for a developer's machine only.
DEV_JWT_SECRET = "payment-worker-development-only-secret"  # noqa: S105 - public on purpose


def webhook_secrets(secret: SecretStr | None) -> tuple[bytes, ...]:
    """A webhook secret variable's secrets (several during a rotation; none: unset)."""
    if secret is None:
        return ()
    return tuple(part.strip().encode() for part in secret.get_secret_value().split(","))


def jwt_secret(settings: Settings) -> str:
    """The secret of the read API's tokens: SIDECAR_JWT_SECRET, or the development one."""
    if settings.sidecar_jwt_secret is not None:
        return settings.sidecar_jwt_secret.get_secret_value()
    return DEV_JWT_SECRET


def require_sidecar_secret(settings: Settings) -> None:
    """The sidecar refuses to start without a JWT secret unless development mode is on."""
    if settings.sidecar_jwt_secret is None and not settings.sidecar_dev_mode:
        raise ConfigError(
            "config error: SIDECAR_JWT_SECRET: required to start the sidecar "
            "(or set SIDECAR_DEV_MODE=true for local development)"
        )
