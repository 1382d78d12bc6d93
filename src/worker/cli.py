"""The `payment-worker` command: `run`, `migrate`, `send` an event, mint a `token`, `schemas`,
`parked` (list or re-drive the messages that could not be published) and `ledger check`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path

import asyncpg

from worker import admin, app, logs, schemas
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
    parser = argparse.ArgumentParser(prog="payment-worker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume events and serve the sidecar until SIGTERM")
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
    args = parser.parse_args(argv)

    if args.command == "kafka-acls":  # from its arguments alone: no settings, no environment
        principals = Principals(
            args.worker,
            args.admin_console,
            args.webhook_ingress,
            args.services,
            args.readers,
            args.readers_group,
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
    if args.command == "send":
        try:
            data = parse_data(args.data)
        except ValueError as exc:
            parser.error(f"data: {exc}")
        event_id = asyncio.run(send_event(settings, args.type, data, args.key))
        print(event_id)
        return 0
    return asyncio.run(app.run(settings))


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
