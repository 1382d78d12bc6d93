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
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from aiokafka.errors import KafkaError

from worker.acls import ADMIN_TOPICS, WEBHOOK_TOPICS
from worker.core import dead_letters
from worker.core.dead_letters import Coordinates, DeadLetter, Replay, Selection, Skipped
from worker.core.topics import INPUT_TOPICS, with_prefix
from worker.messaging.clients import partitions_of
from worker.messaging.dead_letters import CONNECT_SECONDS, DlqError, read_all, replay
from worker.settings import Settings

PROGRESS_EVERY_SECONDS = 2.0
T = TypeVar("T")


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
        return asyncio.run(_replay(settings, selection, dry_run=args.dry_run))
    except DlqError as exc:
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


async def _chosen(
    settings: Settings, selection: Selection, keep: Callable[[DeadLetter], T]
) -> tuple[list[T], int]:
    """What `keep` makes of each chosen letter, oldest failure first; and how many were read.
    Only what `keep` returns stays in memory: a line for `list`, the whole letter for the rest."""
    chosen, read = [], 0
    progress = _Progress("read {done} of about {total} dead letters")
    async for letter in read_all(settings, progress):
        read += 1
        if selection.chooses(letter):
            chosen.append((dead_letters.failure_order(letter), keep(letter)))
    chosen.sort(key=lambda pair: pair[0])
    return [kept for _, kept in chosen], read


async def _list(settings: Settings, selection: Selection) -> int:
    lines, read = await _chosen(settings, selection, dead_letters.line)
    for text in lines:
        print(text)
    print(f"{len(lines)} of {read} dead letters", file=sys.stderr)
    return 0


async def _show(settings: Settings, selection: Selection) -> int:
    chosen, _ = await _chosen(settings, selection, lambda letter: letter)
    (wanted,) = selection.sources
    if not chosen:
        print(f"payment-worker dlq show: no dead letter of {wanted}", file=sys.stderr)
        return 1
    for number, letter in enumerate(chosen, 1):
        if len(chosen) > 1:
            print(f"copy {number} of {len(chosen)}")
        print("\n".join(dead_letters.details(letter)))
    return 0


# Inputs whose letters a replay leaves to their owner: they carry a signature or an assertion
# judged by the broker's append time, which a replay renews but cannot re-sign; and only their
# owner may write them (docs/security.md).
RESENT_BY_OWNER = {
    **dict.fromkeys(WEBHOOK_TOPICS, "a webhook: ask the provider to send it again"),
    **dict.fromkeys(ADMIN_TOPICS, "a privileged request: the admin console signs it again"),
}


async def _replay(settings: Settings, selection: Selection, *, dry_run: bool) -> int:
    prefix = settings.kafka_topic_prefix
    inputs = with_prefix(prefix, INPUT_TOPICS)
    chosen, read = await _chosen(settings, selection, lambda letter: letter)
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            found = await partitions_of(settings, inputs)
    except TimeoutError as exc:
        raise DlqError(
            f"the broker at {settings.kafka_bootstrap_servers} did not answer in "
            f"{CONNECT_SECONDS:g} s"
        ) from exc
    except (KafkaError, OSError) as exc:
        raise DlqError(
            f"the broker at {settings.kafka_bootstrap_servers}, describing the input topics: {exc}"
        ) from exc
    owners = {prefix + topic: why for topic, why in RESENT_BY_OWNER.items()}
    steps = list(dead_letters.plan(chosen, {t: len(p) for t, p in found.items()}, owners))
    replays = [step for step in steps if isinstance(step, Replay)]
    for step in steps:
        if isinstance(step, Skipped):
            print(f"skipped {step.letter.source or step.letter.at}: {step.reason}")
    skipped = len(steps) - len(replays)
    if dry_run:
        for step in replays:
            print(f"would replay {step.letter.source}")
        print(f"would replay {len(replays)} of {len(chosen)} chosen ({skipped} skipped) of "
              f"{read} dead letters; sent nothing", file=sys.stderr)  # fmt: skip
        return 0
    progress = _Progress("sent {done} of {total}")
    sent = 0

    def acknowledged(done: Sequence[Replay]) -> None:
        nonlocal sent
        sent += len(done)  # counted before it is said: a closed stdout changes nothing sent
        for step in done:
            print(f"replayed {step.letter.source}", flush=True)
        progress(sent, len(replays))

    try:
        await replay(settings, replays, acknowledged)
    except DlqError as exc:
        raise DlqError(
            f"replay stopped after {sent} of {len(replays)} (those are listed above): {exc}"
        ) from exc
    print(f"replayed {sent} of {len(chosen)} chosen ({skipped} skipped) of {read} dead letters",
          file=sys.stderr)  # fmt: skip
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
