"""scripts/stack without services: its knobs, its env output, and that `up` and `down` touch
only what this stack started (probes are injected; "servers" are sleeping processes)."""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack import cli
from stack.kafka import Kafka
from stack.postgres import Postgres
from stack.process import StackError
from stack.settings import Settings, env, load
from stack.stripe_mock import StripeMock

KNOBS = (
    "STACK_DIR",
    "STACK_CACHE",
    "KAFKA_PORT",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_SASL_PORT",
    "PG_PORT",
    "STRIPE_MOCK_PORT",
    "STRIPE_MOCK_HTTPS_PORT",
    "KAFKA_VERSION",
    "KAFKA_HEAP",
    "STRIPE_MOCK_VERSION",
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "STRIPE_API_BASE",
)

Sleeper = Callable[..., int]


def never(port: int) -> bool:
    return False


def always(port: int) -> bool:
    return True


@pytest.fixture
def settings_for(tmp_path: Path) -> Callable[..., Settings]:
    """Settings of a stack in a temp dir, from the given knobs only."""

    def make(**knobs: str) -> Settings:
        return load({"STACK_DIR": str(tmp_path / "stack"), **knobs}, repo_root=tmp_path / "repo")

    return make


@pytest.fixture
def sleeper() -> Iterator[Sleeper]:
    """Starts a harmless process whose command line carries the given words, as a server of
    some stack would; every one is gone after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*words: str) -> int:
        code = "import time; time.sleep(60)"
        started.append(subprocess.Popen([sys.executable, "-c", code, *words]))
        pid = started[-1].pid
        # Popen may return while the kernel is still finishing the exec: no command line yet.
        deadline = time.monotonic() + 10
        while code.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the sleeper never showed its command line"
            time.sleep(0.01)
        return pid

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_defaults_are_the_readme_ports_and_the_repo_folders(tmp_path: Path) -> None:
    settings = load({}, repo_root=tmp_path)

    assert settings.stack_dir == tmp_path.resolve() / ".stack"
    assert settings.stack_cache == tmp_path.resolve() / ".cache"
    assert (settings.kafka_port, settings.kafka_controller_port, settings.pg_port) == (
        9092,
        9093,
        5432,
    )
    assert (settings.stripe_mock_port, settings.stripe_mock_https_port) == (12111, 12112)
    assert settings.kafka_sasl_port == 9094
    assert settings.kafka_heap == ("-Xms128m", "-Xmx512m")
    assert settings.kafka_libs == tmp_path.resolve() / ".cache/kafka-4.4.0/libs"
    assert settings.stripe_mock_bin.parts[-3:] == ("stripe-mock-v0.203.0", "bin", "stripe-mock")
    assert env({}) == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
        "DATABASE_URL": "postgresql://payments:payments@127.0.0.1:5432/payments",
        "STRIPE_API_BASE": "http://127.0.0.1:12111",
        "KAFKA_SASL_LISTENER": "127.0.0.1:9094",
    }


def test_stack_dir_is_resolved_through_links_and_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)

    settings = load({"STACK_DIR": "link/stack", "STACK_CACHE": "./cache/"}, repo_root=tmp_path)

    assert settings.stack_dir == tmp_path.resolve() / "real" / "stack"
    assert settings.stack_cache == tmp_path.resolve() / "cache"


def test_an_empty_knob_counts_as_unset(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(KAFKA_PORT="", KAFKA_BOOTSTRAP_SERVERS="", KAFKA_HEAP="")

    assert settings.kafka_port == 9092
    assert settings.kafka_elsewhere is None
    assert settings.kafka_heap == ("-Xms128m", "-Xmx512m")


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("postgresql://u:p@localhost:15999/db?sslmode=disable", 15999),
        ("postgresql://u:p@127.0.0.1/db", 5432),
        ("postgresql://u:p@[::1]:15997/db", 15997),
        ("postgresql:///db", 5432),
        ("postgresql://u@/db?host=/tmp", 5432),
    ],
)
def test_a_local_database_url_gives_its_port(
    settings_for: Callable[..., Settings], url: str, port: int
) -> None:
    settings = settings_for(DATABASE_URL=url)

    assert settings.database_elsewhere is None
    assert settings.pg_port == port
    expected = f"postgresql://payments:payments@127.0.0.1:{port}/payments"
    assert settings.app_env()["DATABASE_URL"] == expected


def test_the_port_knob_wins_over_a_local_url(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(
        DATABASE_URL="postgresql://u:p@localhost:15999/db",
        PG_PORT="15998",
        KAFKA_BOOTSTRAP_SERVERS="localhost:19999",
        KAFKA_PORT="19998",
    )

    assert (settings.pg_port, settings.kafka_port) == (15998, 19998)


def test_a_remote_database_is_left_alone_and_passed_through(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://u:secret@db.example:5432/db?sslmode=require&x=1"
    settings = settings_for(DATABASE_URL=url)

    assert settings.database_elsewhere == url
    assert settings.app_env()["DATABASE_URL"] == url
    Postgres(settings, answers=never).status()
    assert capsys.readouterr().out == (
        "postgres: DATABASE_URL points elsewhere "
        "(postgresql://u:***@db.example:5432/db?sslmode=require&x=1); not managed\n"
    )


@pytest.mark.parametrize(
    ("servers", "port", "elsewhere"),
    [
        ("localhost:19999", 19999, None),
        ("PLAINTEXT://127.0.0.1:19111,other.example:1", 19111, None),
        ("[::1]:19112", 19112, None),
        ("localhost", 9092, None),
        ("kafka.example:9092,b2:9092", 9092, "kafka.example:9092,b2:9092"),
        ("[fe80::1]:19112", 9092, "[fe80::1]:19112"),
    ],
)
def test_kafka_bootstrap_servers_local_or_remote_by_the_first_host(
    settings_for: Callable[..., Settings], servers: str, port: int, elsewhere: str | None
) -> None:
    settings = settings_for(KAFKA_BOOTSTRAP_SERVERS=servers)

    assert (settings.kafka_port, settings.kafka_elsewhere) == (port, elsewhere)
    assert settings.app_env()["KAFKA_BOOTSTRAP_SERVERS"] == (elsewhere or f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("base", "knobs", "expected"),
    [
        ("http://localhost:22999/v1", {}, "http://127.0.0.1:22999"),
        ("https://127.0.0.1:22998", {}, "https://127.0.0.1:22998"),
        ("https://127.0.0.1:22998", {"STRIPE_MOCK_HTTPS_PORT": "22997"}, "https://127.0.0.1:22997"),
        ("https://localhost", {}, "https://127.0.0.1:12112"),
        ("http://u:p@localhost:22996?x#y", {}, "http://127.0.0.1:22996"),
        ("https://api.stripe.com", {}, "https://api.stripe.com"),
    ],
)
def test_stripe_api_base_picks_the_http_or_https_port(
    settings_for: Callable[..., Settings], base: str, knobs: dict[str, str], expected: str
) -> None:
    settings = settings_for(STRIPE_API_BASE=base, **knobs)

    assert settings.app_env()["STRIPE_API_BASE"] == expected
    assert (settings.stripe_elsewhere is not None) == ("api.stripe.com" in base)


def test_an_https_api_base_keeps_the_http_port_for_the_server(
    settings_for: Callable[..., Settings],
) -> None:
    settings = settings_for(STRIPE_API_BASE="https://127.0.0.1:22998")

    assert (settings.stripe_mock_port, settings.stripe_mock_https_port) == (12111, 22998)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (
            {"KAFKA_PORT": "19000", "KAFKA_CONTROLLER_PORT": "19000"},
            "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both 19000)",
        ),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "localhost:9093"},
            "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both 9093)",
        ),
        (
            {"KAFKA_SASL_PORT": "9092"},
            "KAFKA_PORT and KAFKA_SASL_PORT must differ (both 9092)",
        ),
        (
            {"STRIPE_MOCK_PORT": "22000", "STRIPE_MOCK_HTTPS_PORT": "22000"},
            "STRIPE_MOCK_PORT and STRIPE_MOCK_HTTPS_PORT must differ (both 22000)",
        ),
        ({"PG_PORT": "5x"}, "PG_PORT must be a port number, got '5x'"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "localhost:abc"},
            "KAFKA_PORT must be a port number, got 'abc'",
        ),
        (
            {"STRIPE_MOCK_VERSION": "0.1"},
            "STRIPE_MOCK_VERSION must be a module version such as v0.203.0, got '0.1'",
        ),
    ],
)
def test_bad_knobs_are_refused_with_the_knob_named(
    settings_for: Callable[..., Settings], knobs: dict[str, str], message: str
) -> None:
    with pytest.raises(StackError) as refused:
        settings_for(**knobs)

    assert str(refused.value) == message


def test_the_postgres_socket_moves_to_tmp_when_stack_dir_is_deep(tmp_path: Path) -> None:
    shallow = load({"STACK_DIR": "/srv/stack"}, repo_root=tmp_path)
    deep_dir = "/srv/" + "d" * 90
    deep = load({"STACK_DIR": deep_dir}, repo_root=tmp_path)

    assert shallow.pg_socket_dir == Path("/srv/stack/postgres/sock")
    digest = hashlib.md5(deep_dir.encode(), usedforsecurity=False).hexdigest()
    assert str(deep.pg_socket_dir) == "/tmp/stack-pg-" + digest[:12]  # noqa: S108 - per stack


def test_env_prints_export_lines_a_shell_evaluates_to_the_same_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s@db.example/db?sslmode=require&x=$HOME")
    monkeypatch.setenv("PG_PORT", "15432")

    assert cli.main(["env"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092"
    evaluated = subprocess.run(
        ["/bin/bash", "-c", "\n".join(lines) + '\nprintf %s "$DATABASE_URL"'],
        check=True,
        capture_output=True,
        text=True,
        env={},
    ).stdout
    assert evaluated == os.environ["DATABASE_URL"] == env(os.environ)["DATABASE_URL"]
    assert [shlex.split(line)[1].partition("=")[2] for line in lines] == list(
        env(os.environ).values()
    )


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        ([], 2, "scripts/stack: bring up / stop"),
        (["help"], 2, "scripts/stack: bring up / stop"),
        (["-h"], 2, "scripts/stack: bring up / stop"),
        (["frob"], 2, "stack: unknown command frob"),
        (["up", "kafka", "nope"], 1, "stack: unknown service 'nope'"),
        (["up", "-h"], 1, "stack: unknown service '-h'"),
        (["down", "--"], 1, "stack: unknown service '--'"),
        (["status", "kafka"], 1, "stack: status takes no arguments"),
        (["env", "x"], 1, "stack: env takes no arguments"),
        (["reset", "postgres"], 1, "stack: reset takes no arguments"),
    ],
)
def test_usage_and_argument_errors_keep_their_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    error: str,
) -> None:
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)

    assert cli.main(args) == code
    assert capsys.readouterr().err.startswith(error)


def test_reset_refuses_a_folder_that_holds_more_than_stack_state(
    tmp_path: Path, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    (settings.stack_dir / "kafka").mkdir(parents=True)
    (settings.stack_dir / "notes.txt").write_text("mine")

    with pytest.raises(StackError, match=re.escape("it holds 'notes.txt', not just stack state")):
        cli.reset(settings, [])
    with pytest.raises(StackError, match="refusing to delete STACK_DIR="):
        cli.check_reset_target(load({"STACK_DIR": str(tmp_path)}, repo_root=tmp_path / "repo"))
    assert (settings.stack_dir / "notes.txt").exists()


def test_reset_deletes_the_state_of_a_stopped_stack(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(PG_PORT="1", KAFKA_PORT="2", STRIPE_MOCK_PORT="3")
    (settings.kafka_dir / "data").mkdir(parents=True)
    (settings.kafka_dir / "kafka.pid").write_text("999999999\n")

    cli.reset(settings, [])

    assert not settings.stack_dir.exists()
    assert capsys.readouterr().out.splitlines() == [
        "kafka: not running (nothing started by this script)",
        "postgres: not running (nothing started by this script)",
        "stripe-mock: not running (nothing started by this script)",
        f"reset: deleted {settings.stack_dir} (jar and binary cache kept in "
        f"{settings.stack_cache})",
    ]


def test_up_leaves_alone_a_kafka_that_already_answers(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(KAFKA_PORT="19092")

    Kafka(settings, answers=always, tcp_open=always).up()

    assert capsys.readouterr().out == (
        "kafka: already reachable on 127.0.0.1:19092, leaving it alone\n"
    )
    assert not settings.kafka_dir.exists()


def test_up_refuses_a_port_taken_by_something_else(settings_for: Callable[..., Settings]) -> None:
    settings = settings_for(KAFKA_PORT="19092", STRIPE_MOCK_HTTPS_PORT="22112")

    with pytest.raises(StackError, match="19092 is taken by something that does not answer as"):
        Kafka(settings, answers=never, tcp_open=always).up()
    with pytest.raises(StackError, match=re.escape("HTTPS port 127.0.0.1:22112 is already in use")):
        StripeMock(settings, answers=never, tcp_open=lambda port: port == 22112).up()
    assert not settings.stack_dir.exists()


def test_up_is_a_no_op_when_this_stacks_broker_runs(
    settings_for: Callable[..., Settings],
    sleeper: Sleeper,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(KAFKA_PORT="19092", KAFKA_SASL_PORT="19094")
    kafka = Kafka(settings, answers=always, tcp_open=always)
    settings.kafka_dir.mkdir(parents=True)
    config = (
        "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,"
        "SASL_PLAINTEXT://127.0.0.1:19094\n"
    )
    kafka.conf.write_text(config)
    pid = sleeper("kafka.Kafka", str(kafka.conf))
    kafka.daemon.pid_file.write_text(f"{pid}\n")

    kafka.up()
    kafka.status()
    # A broker started before the SASL listener existed: still left alone, and said so.
    old_config = "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n"
    kafka.conf.write_text(old_config)
    kafka.up()

    assert capsys.readouterr().out.splitlines() == [
        f"kafka: already running on 127.0.0.1:19092 (pid {pid})",
        f"kafka: listening on 127.0.0.1:19092, pid {pid}, state {settings.kafka_dir}",
        f"kafka: the running broker (pid {pid}) has no SASL listener; "
        "'scripts/stack down kafka' and 'up' again to add it",
        f"kafka: already running on 127.0.0.1:19092 (pid {pid})",
    ]
    assert kafka.conf.read_text() == old_config  # not rewritten
    with pytest.raises(
        StackError, match=re.escape("runs on 127.0.0.1:19092, not KAFKA_PORT=19094")
    ):
        Kafka(settings_for(KAFKA_PORT="19094"), answers=always).up()
    kafka.conf.write_text(config)  # the broker's SASL listener is not where asked
    with pytest.raises(
        StackError, match=re.escape("SASL listener on 127.0.0.1:19094, not KAFKA_SASL_PORT=19095")
    ):
        Kafka(settings_for(KAFKA_PORT="19092", KAFKA_SASL_PORT="19095"), answers=always).up()


def test_down_leaves_alone_a_process_this_stack_did_not_start(
    settings_for: Callable[..., Settings],
    sleeper: Sleeper,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for()
    stranger = sleeper("kafka.Kafka", "/elsewhere/kafka/server.properties")
    kafka, stripe = Kafka(settings), StripeMock(settings)
    for daemon in (kafka.daemon, stripe.daemon):
        daemon.pid_file.parent.mkdir(parents=True)
        daemon.pid_file.write_text(f"{stranger}\n")
    settings.pg_data.mkdir(parents=True)
    (settings.pg_data / "postmaster.pid").write_text(f"{stranger}\n/x\n1\n5432\n")

    kafka.down()
    Postgres(settings).down()
    stripe.down()

    assert capsys.readouterr().out.splitlines() == [
        "kafka: not running (nothing started by this script)",
        "postgres: not running (nothing started by this script)",
        "stripe-mock: not running (nothing started by this script)",
    ]
    os.kill(stranger, 0)  # still alive
    assert not kafka.daemon.pid_file.exists()  # the stale pid file is dropped
    assert (settings.pg_data / "postmaster.pid").exists()  # PostgreSQL's own


def test_down_stops_the_stripe_mock_this_stack_started(
    settings_for: Callable[..., Settings],
    sleeper: Sleeper,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(STRIPE_MOCK_PORT="22111")
    stripe = StripeMock(settings, answers=always)
    pid = sleeper(str(stripe.link), "-http-addr", "127.0.0.1:22111")
    stripe.daemon.pid_file.parent.mkdir(parents=True)
    stripe.daemon.pid_file.write_text(f"{pid}\n")

    stripe.up()
    with pytest.raises(
        StackError, match=re.escape("runs on 127.0.0.1:22111, not STRIPE_MOCK_PORT=22113")
    ):
        StripeMock(settings_for(STRIPE_MOCK_PORT="22113"), answers=always).up()
    stripe.down()

    assert capsys.readouterr().out.splitlines() == [
        f"stripe-mock: already running on 127.0.0.1:22111 (pid {pid})",
        f"stripe-mock: stopping pid {pid}...",
        "stripe-mock: stopped",
    ]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not stripe.daemon.pid_file.exists()


def test_up_leaves_alone_a_postgres_that_already_answers(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(PG_PORT="15432")

    Postgres(settings, answers=always, tcp_open=always).up()

    assert capsys.readouterr().out == (
        "postgres: already reachable on 127.0.0.1:15432, leaving it alone\n"
    )
    assert not settings.pg_dir.exists()


def test_services_pointed_elsewhere_are_not_managed(
    settings_for: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_for(
        KAFKA_BOOTSTRAP_SERVERS="k.example:1", STRIPE_API_BASE="https://api.stripe.com"
    )

    Kafka(settings, answers=always).up()
    StripeMock(settings, answers=always).down()

    assert capsys.readouterr().out.splitlines() == [
        "kafka: KAFKA_BOOTSTRAP_SERVERS points elsewhere (k.example:1); not managed",
        "stripe-mock: STRIPE_API_BASE points elsewhere (https://api.stripe.com); not managed",
    ]
    assert not settings.stack_dir.exists()
