"""The `payment-worker` command: `run`, `migrate`, `send` an event, mint a `token`, `schemas`,
`parked` (list or re-drive the messages that could not be published), `dlq` (list, show or
replay dead letters), `ledger check` and `status`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import asyncpg
from aiokafka.errors import KafkaError

from worker import admin, app, dlq_command, logs, processes, schemas, status
from worker.acls import Principals, acl_commands, shell_lines
from worker.send import parse_data, send_event
from worker.settings import (
    ConfigError,
    Settings,
    jwt_secret,
    load_settings,
    require_sidecar_secret,
)
from worker.sidecar.auth import ROLES, mint_token

EXIT_CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="payment-worker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="consume events and serve the sidecar until SIGTERM (WORKER_PROCESSES of them)",
    )
    commands.add_parser("migrate", help="apply database migrations and exit")
    send = commands.add_parser("send", help="send one event to the worker's topics")
    send.add_argument("type", help="event type (= topic), e.g. course.completed")
    send.add_argument("data", help="the event's data as a JSON object")
    send.add_argument(
        "--key",
        required=True,
        help="Kafka key and subject: the student id (for webhooks, the provider payment id)",
    )
    token = commands.add_parser("token", help="mint a read-API token (SIDECAR_JWT_SECRET)")
    token.add_argument("--sub", required=True, help="the caller: a student id, or a service name")
    token.add_argument("--role", required=True, choices=ROLES)
    token.add_argument("--minutes", type=float, default=60.0, help="lifetime (default: 60)")
    acls = commands.add_parser(
        "kafka-acls", help="print the kafka-acls commands a deployment needs (docs/security.md)"
    )
    acls.add_argument("--worker", default="User:payment-worker", help="the worker's principal")
    acls.add_argument("--admin-console", default="User:admin-console")
    acls.add_argument("--webhook-ingress", default="User:webhook-ingress")
    acls.add_argument(
        "--services", default="User:platform", help="the services sending the other inputs"
    )
    acls.add_argument(
        "--readers", default="User:payment-results", help="a service consuming the results"
    )
    acls.add_argument("--readers-group", default="payment-results", help="its consumer group")
    acls.add_argument(
        "--operator", default="User:payment-operator", help="who runs status, dlq list and show"
    )
    acls.add_argument("--replayer", default="User:payment-replayer", help="who runs dlq replay")
    acls.add_argument("--prefix", default="", help="KAFKA_TOPIC_PREFIX (default: none)")
    acls.add_argument("--group", default="payment-worker", help="KAFKA_CONSUMER_GROUP")
    generate = commands.add_parser("schemas", help="write the events' JSON Schemas and AsyncAPI")
    generate.add_argument("--out", type=Path, default=Path("schemas"), help="default: schemas")
    park = commands.add_parser("parked", help="messages that could not be published")
    park_commands = park.add_subparsers(dest="action", required=True)
    listing = park_commands.add_parser("list", help="one line per parked message, oldest first")
    listing.add_argument("--limit", type=_positive, default=100, help="at most (default: 100)")
    again = park_commands.add_parser("redrive", help="queue parked messages for publishing again")
    chosen = again.add_mutually_exclusive_group(required=True)
    chosen.add_argument("seqs", nargs="*", type=int, default=[], help="parked seqs to re-drive")
    chosen.add_argument("--all", action="store_true", help="re-drive every parked message")
    ledger = commands.add_parser("ledger", help="the ledger's and payments' invariants")
    ledger_commands = ledger.add_subparsers(dest="action", required=True)
    ledger_commands.add_parser(
        "check",
        help="check every invariant in the database; exit 1 and say what is wrong if one breaks",
    )
    _dlq_parser(commands)
    commands.add_parser(
        "status", help="the group, its partitions and lag, the outbox, parked and dead letters"
    )
    args = parser.parse_args(argv)

    if args.command == "kafka-acls":  # from its arguments alone: no settings, no environment
        principals = Principals(
            args.worker,
            args.admin_console,
            args.webhook_ingress,
            args.services,
            args.readers,
            args.readers_group,
            args.operator,
            args.replayer,
        )
        for line in shell_lines(acl_commands(principals, args.prefix, args.group)):
            print(line)
        return 0
    if args.command == "schemas":  # reads only the models: no settings, no environment
        for path in schemas.write(args.out):
            print(path)
        return 0

    try:
        settings = load_settings()
        if args.command in ("run", "token"):
            require_sidecar_secret(settings)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logs.configure(settings.log_level)
    if args.command in (
        "dlq",
        "status",
        "send",
    ):  # what fails is said in one line, not in the client's
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    if args.command == "token":
        limit = settings.sidecar_jwt_max_lifetime_minutes
        if args.minutes > limit:
            print(
                f"token: --minutes {args.minutes:g} is longer than the tokens the sidecar "
                f"accepts (SIDECAR_JWT_MAX_LIFETIME_MINUTES={limit:g})",
                file=sys.stderr,
            )
            return EXIT_CONFIG_ERROR
        print(
            mint_token(
                jwt_secret(settings),
                args.sub,
                args.role,
                timedelta(minutes=args.minutes),
                issuer=settings.sidecar_jwt_issuer,
                audience=settings.sidecar_jwt_audience,
            )
        )
        return 0
    if args.command == "migrate":
        return asyncio.run(app.migrate(settings))
    if args.command == "parked":
        return _parked(settings, args)
    if args.command == "ledger":
        return _ledger_check(settings)
    if args.command == "dlq":
        return dlq_command.main(settings, args)
    if args.command == "status":
        return _status(settings)
    if args.command == "send":
        try:
            data = parse_data(args.data)
        except ValueError as exc:
            parser.error(f"data: {exc}")
        try:
            event_id = asyncio.run(send_event(settings, args.type, data, args.key))
        except (LookupError, KafkaError, OSError) as exc:
            print(f"payment-worker send: {exc}", file=sys.stderr)
            return 1
        print(event_id)
        return 0
    if settings.worker_processes > 1:
        return asyncio.run(processes.supervise(settings))
    return asyncio.run(app.run(settings))


class _Parser(argparse.ArgumentParser):
    """Says what is wrong with the arguments in one line, and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _dlq_parser(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="read the dead-letter topic; replay chosen letters")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser(
        "list", help="one line per dead letter: source topic:partition:offset, key, time, error"
    )
    _selection_arguments(listing)
    show = actions.add_parser("show", help="everything one dead letter holds, its value whole")
    show.add_argument(
        "source", type=dlq_command.coordinates, help="TOPIC:PARTITION:OFFSET, as `dlq list` says"
    )
    replay = actions.add_parser(
        "replay",
        help="re-send chosen dead letters to their source partitions (safe to repeat: their "
        "event ids are remembered)",
    )
    replay.add_argument(
        "sources",
        nargs="*",
        type=dlq_command.coordinates,
        help="TOPIC:PARTITION:OFFSET of each letter to replay (default: every chosen one)",
    )
    _selection_arguments(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed; send nothing"
    )


def _selection_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--error-class",
        action="append",
        default=[],
        metavar="CLASS",
        help="only letters with this dlq.error.class (repeatable), e.g. ValidationError",
    )
    command.add_argument(
        "--topic",
        action="append",
        default=[],
        help="only letters from this input topic (repeatable), e.g. course.completed",
    )
    command.add_argument(
        "--since", type=dlq_command.instant, help="only letters that failed at or after TIME "
        "(ISO 8601 with its offset, e.g. 2026-11-28T09:00:00Z)"
    )  # fmt: skip
    command.add_argument(
        "--until", type=dlq_command.instant, help="only letters that failed before TIME"
    )


def _status(settings: Settings) -> int:
    found = asyncio.run(status.gather(settings))
    for line in status.render(found, settings):
        print(line, file=sys.stderr if line.startswith("error: ") else sys.stdout)
    return 1 if found.errors else 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _ledger_check(settings: Settings) -> int:
    try:
        problems = asyncio.run(admin.ledger_problems(settings))
    except asyncpg.UndefinedTableError as exc:
        print(f"payment-worker: the database is not migrated ({exc}): run `payment-worker "
              "migrate`, or start a worker of this version", file=sys.stderr)  # fmt: skip
        return 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        print(f"payment-worker: the database cannot be used: {exc}", file=sys.stderr)
        return 1
    if not problems:
        print("ledger check: ok (balances, entries, lots, decisions, stock, payment paths)")
        return 0
    for what, count, examples in problems:
        print(f"ledger check: {what}: {count} (e.g. {', '.join(examples)})")
    return 1


def _parked(settings: Settings, args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            for message in asyncio.run(admin.parked(settings, args.limit)):
                print(admin.describe(message))
            return 0
        moved = asyncio.run(admin.redrive(settings, None if args.all else args.seqs))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        print(f"payment-worker: the database cannot be used: {exc}", file=sys.stderr)
        return 1
    print(f"re-queued {len(moved)} parked message(s): {' '.join(map(str, moved)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
