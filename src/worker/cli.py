"""The `payment-worker` command: `run` the worker and sidecar, or `migrate` the database."""

from __future__ import annotations

import argparse
import asyncio
import sys

from worker import app, logs
from worker.settings import ConfigError, load_settings

EXIT_CONFIG_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="payment-worker", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="consume events and serve the sidecar until SIGTERM")
    commands.add_parser("migrate", help="apply database migrations and exit")
    args = parser.parse_args(argv)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logs.configure(settings.log_level)

    if args.command == "migrate":
        return asyncio.run(app.migrate(settings))
    return asyncio.run(app.run(settings))


if __name__ == "__main__":
    sys.exit(main())
