"""`payment-worker dlq list|show|replay`: the dead-letter topic for an operator.

Every action reads the topic from its start to the end it has when the command starts, and
chooses letters by error class, source topic, failure time or source coordinates. Progress goes
to stderr every few seconds on long runs; results go to stdout. Exit codes: 0 done, 1 a
dependency failed or `show` found nothing, 2 a bad argument (said by the parser).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import datetime

from worker.core import dead_letters
from worker.core.dead_letters import Coordinates, DeadLetter, Replay, Selection, Skipped
from worker.core.topics import INPUT_TOPICS, with_prefix
from worker.messaging.dead_letters import BrokerUnavailable, read_all, replay
from worker.settings import Settings

PROGRESS_EVERY_SECONDS = 2.0


def coordinates(text: str) -> Coordinates:
    try:
        return dead_letters.parse_coordinates(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def instant(text: str) -> datetime:
    try:
        found = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from exc
    if found.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no offset: say which zone, e.g. {text}Z or {text}+05:30"
        )
    return found


def main(settings: Settings, args: argparse.Namespace) -> int:
    inputs = frozenset(with_prefix(settings.kafka_topic_prefix, INPUT_TOPICS))
    try:
        selection = _selection(args, settings.kafka_topic_prefix, inputs)
    except ValueError as exc:
        print(f"payment-worker dlq {args.action}: {exc}", file=sys.stderr)
        return 2
    try:
        if args.action == "list":
            return asyncio.run(_list(settings, selection))
        if args.action == "show":
            return asyncio.run(_show(settings, selection))
        return asyncio.run(_replay(settings, selection, inputs, dry_run=args.dry_run))
    except BrokerUnavailable as exc:
        print(f"payment-worker dlq {args.action}: {exc}", file=sys.stderr)
        return 1


def _selection(args: argparse.Namespace, prefix: str, inputs: frozenset[str]) -> Selection:
    """The letters the arguments choose. A topic may be named as its event type or as deployed
    (with `KAFKA_TOPIC_PREFIX`); it must be an input topic."""

    def deployed(topic: str) -> str:
        name = topic if topic in inputs else prefix + topic
        if name not in inputs:
            raise ValueError(f"{topic} is not an input topic (e.g. {INPUT_TOPICS[0]})")
        return name

    sources = [args.source] if args.action == "show" else getattr(args, "sources", [])
    if args.action == "show":
        return Selection(sources=frozenset(_deployed_coordinates(c, deployed) for c in sources))
    if args.since and args.until and args.since >= args.until:
        raise ValueError("--since must be before --until")
    return Selection(
        error_classes=frozenset(args.error_class),
        topics=frozenset(deployed(t) for t in args.topic),
        since=args.since,
        until=args.until,
        sources=frozenset(_deployed_coordinates(c, deployed) for c in sources),
    )


def _deployed_coordinates(found: Coordinates, deployed: Callable[[str], str]) -> Coordinates:
    return Coordinates(deployed(found.topic), found.partition, found.offset)


async def _chosen(settings: Settings, selection: Selection) -> tuple[list[DeadLetter], int]:
    """The chosen letters, and how many were read."""
    chosen, read = [], 0
    progress = _Progress("read {done} of about {total} dead letters")
    async for letter in read_all(settings, progress):
        read += 1
        if selection.chooses(letter):
            chosen.append(letter)
    chosen.sort(key=lambda letter: (letter.failed_at is None, letter.failed_at or 0, letter.at))
    return chosen, read


async def _list(settings: Settings, selection: Selection) -> int:
    chosen, read = await _chosen(settings, selection)
    for letter in chosen:
        print(dead_letters.line(letter))
    print(f"{len(chosen)} of {read} dead letters", file=sys.stderr)
    return 0


async def _show(settings: Settings, selection: Selection) -> int:
    chosen, _ = await _chosen(settings, selection)
    (wanted,) = selection.sources
    if not chosen:
        print(f"payment-worker dlq show: no dead letter of {wanted}", file=sys.stderr)
        return 1
    for number, letter in enumerate(chosen, 1):
        if len(chosen) > 1:
            print(f"copy {number} of {len(chosen)}")
        print("\n".join(dead_letters.details(letter)))
    return 0


async def _replay(
    settings: Settings, selection: Selection, inputs: frozenset[str], *, dry_run: bool
) -> int:
    chosen, read = await _chosen(settings, selection)
    steps = list(dead_letters.plan(chosen, inputs))
    replays = [step for step in steps if isinstance(step, Replay)]
    for step in steps:
        if isinstance(step, Skipped):
            print(f"skipped {step.letter.source or step.letter.at}: {step.reason}")
    verb = "would replay" if dry_run else "replayed"
    if dry_run:
        sent = len(replays)
    else:
        try:
            sent = await replay(settings, replays, _Progress("sent {done} of {total}"))
        except BrokerUnavailable:
            raise
        except Exception as exc:
            raise BrokerUnavailable(
                f"replay stopped: {exc!r}; the letters sent before it are recognized by their "
                "event ids when the command runs again"
            ) from exc
    for step in replays:
        print(f"{verb} {step.letter.source}")
    skipped = len(steps) - len(replays)
    print(
        f"{verb} {sent} of {len(chosen)} chosen ({skipped} skipped) of {read} dead letters",
        file=sys.stderr,
    )
    return 0


class _Progress:
    """Prints `template` to stderr at most every few seconds: quiet on a short run."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._next = time.monotonic() + PROGRESS_EVERY_SECONDS

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + PROGRESS_EVERY_SECONDS
            print(self._template.format(done=done, total=total), file=sys.stderr, flush=True)
