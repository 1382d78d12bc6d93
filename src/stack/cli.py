"""The `scripts/stack` command: up, down, status, env and reset of the local stack, and Kafka's
user and ACL tools against its broker.

The arguments are read by hand, not by argparse: its conventions (exit 2 for a bad argument,
`-h` exiting 0, `--` swallowed) would change the exit codes and messages that scripts and tests
rely on.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from types import FrameType
from typing import Protocol

from stack import prometheus_binaries
from stack.kafka import TOOLS, Kafka
from stack.postgres import Postgres
from stack.process import StackError, remove_tree, say
from stack.settings import Settings, load
from stack.stripe_mock import StripeMock

USAGE = """\
scripts/stack: bring up / stop the local dependencies of payment-worker
(Apache Kafka in KRaft mode, single node, a private PostgreSQL cluster and
Stripe's API simulator stripe-mock) without Docker: Kafka's jars come from
Maven Central, PostgreSQL from Debian's packages, stripe-mock is built once
with `go install`. Everything listens on 127.0.0.1 only.

  scripts/stack up [kafka|postgres|stripe-mock ...]    default: all three; idempotent
  scripts/stack down [kafka|postgres|stripe-mock ...]  stop what this script started; keep data
  scripts/stack status                                 one line per service
  scripts/stack env                                    export lines for the app
  scripts/stack reset                                  down, then delete $STACK_DIR (keeps the cache)
  scripts/stack kafka-acls|kafka-configs ARGS...       Kafka's tool against the local broker
  scripts/stack tools                                  install promtool and the Prometheus
                                                       server (Debian's prometheus) if absent

Kafka also listens for SASL/SCRAM clients on 127.0.0.1:$KAFKA_SASL_PORT (9094), where its ACLs
bind; its plain listener stays open to all (docs/security.md).
"""  # noqa: E501 - the help text as the bash script printed it
EXIT_FAILED = 1
EXIT_USAGE = 2
STATE_ENTRIES = frozenset({"kafka", "postgres", "stripe-mock", ".stack.lock"})


class Service(Protocol):
    def up(self) -> None: ...
    def down(self) -> None: ...
    def status(self) -> None: ...


SERVICES: dict[str, Callable[[Settings], Service]] = {
    "kafka": Kafka,
    "postgres": Postgres,
    "stripe-mock": StripeMock,
}


class Interrupted(BaseException):
    """A terminating signal arrived: unwind (temp dirs, lock) and then die of it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def run() -> int:
    """The command, dying of a terminating signal like the shell script did, but only after
    unwinding: temp dirs of an interrupted build are removed and the lock released."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        return main(sys.argv[1:])
    except Interrupted as interrupted:
        signal.signal(interrupted.signum, signal.SIG_DFL)
        os.kill(os.getpid(), interrupted.signum)
        return 128 + interrupted.signum


def main(args: Sequence[str]) -> int:
    if not args:
        return usage()
    command, rest = args[0], args[1:]
    try:
        settings = load(os.environ)
        if command in ("-h", "--help", "help"):
            return usage()
        if command not in COMMANDS:
            print(f"stack: unknown command {command}", file=sys.stderr)
            return usage()
        COMMANDS[command](settings, rest)
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:  # a file or directory operation the stack could not do
        print(f"stack: {error}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def usage() -> int:
    print(USAGE, file=sys.stderr)
    return EXIT_USAGE


def up(settings: Settings, services: Sequence[str]) -> None:
    picked = pick_services(services)
    with locked(settings):
        for name in picked:
            SERVICES[name](settings).up()


def down(settings: Settings, services: Sequence[str]) -> None:
    picked = pick_services(services)
    with locked(settings):
        for name in picked:
            SERVICES[name](settings).down()


def status(settings: Settings, args: Sequence[str]) -> None:
    no_arguments("status", args)
    for make in SERVICES.values():
        make(settings).status()


def env(settings: Settings, args: Sequence[str]) -> None:
    no_arguments("env", args)
    for name, value in settings.app_env().items():
        print(f"export {name}={shlex.quote(value)}")


def tools(settings: Settings, args: Sequence[str]) -> None:
    no_arguments("tools", args)
    prometheus_binaries.install()


def reset(settings: Settings, args: Sequence[str]) -> None:
    no_arguments("reset", args)
    if not settings.stack_dir.is_dir():
        say(f"reset: {settings.stack_dir} does not exist, nothing to do")
        return
    check_reset_target(settings)
    # Our processes must stop before their data goes, even if the URLs now point elsewhere
    # (the pid checks still limit this to what we started).
    ours = replace(settings, kafka_elsewhere=None, database_elsewhere=None, stripe_elsewhere=None)
    with locked(ours):
        for make in SERVICES.values():
            make(ours).down()
        if not ours.pg_socket_dir.is_relative_to(ours.stack_dir):
            remove_tree(ours.pg_socket_dir)
        remove_tree(ours.stack_dir)
    say(f"reset: deleted {ours.stack_dir} (jar and binary cache kept in {ours.stack_cache})")


def kafka_tool(name: str) -> Callable[[Settings, Sequence[str]], None]:
    """`scripts/stack kafka-acls ...`: one of Kafka's tools against this stack's broker."""

    def command(settings: Settings, args: Sequence[str]) -> None:
        if code := Kafka(settings).tool(name, args):
            raise StackError(f"{name} exited {code}")

    return command


COMMANDS: dict[str, Callable[[Settings, Sequence[str]], None]] = {
    "up": up,
    "down": down,
    "status": status,
    "env": env,
    "reset": reset,
    "tools": tools,
    **{name: kafka_tool(name) for name in TOOLS},
}


def pick_services(names: Sequence[str]) -> list[str]:
    """The services named, in order; none means all."""
    for name in names:
        if name not in SERVICES:
            raise StackError(f"unknown service '{name}' (expected kafka, postgres or stripe-mock)")
    return list(names) or list(SERVICES)


def no_arguments(command: str, args: Sequence[str]) -> None:
    if args:
        raise StackError(f"{command} takes no arguments")


def check_reset_target(settings: Settings) -> None:
    """Deleting STACK_DIR is only safe when it really is a stack state dir."""
    stack_dir, repo = settings.stack_dir, settings.repo_root
    if stack_dir == stack_dir.parent or stack_dir == repo or repo.is_relative_to(stack_dir):
        raise StackError(f"refusing to delete STACK_DIR={stack_dir}")
    for entry in sorted(os.listdir(stack_dir), key=lambda name: (name.startswith("."), name)):
        if entry not in STATE_ENTRIES:
            raise StackError(
                f"refusing to delete STACK_DIR={stack_dir}: it holds '{entry}', not just stack "
                "state"
            )


@contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Serialises up/down/reset on one stack (two test processes may race). The lock file is
    close-on-exec, so the servers started under it do not hold it."""
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    with (settings.stack_dir / ".stack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)
