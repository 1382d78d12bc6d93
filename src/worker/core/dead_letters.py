"""Dead letters as an operator reads them: where a record came from and why it failed, which
ones to choose, and the copy that goes back to its source topic (`payment-worker dlq`).

A dead letter is the failed record byte for byte with the worker's `dlq.*` headers
(`worker.core.records.dead_letter`). Replaying one re-sends the record as it was consumed, to
the partition it was consumed from; its event id makes that safe to repeat (CONTRACT section 3).
"""

from __future__ import annotations

import heapq
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from worker.core.messages import Headers
from worker.core.records import DLQ_HEADER_PREFIX

# TOPIC:PARTITION:OFFSET. Kafka's topic names never hold a colon ([a-zA-Z0-9._-]).
_COORDINATES = re.compile(
    r"(?P<topic>[A-Za-z0-9._-]{1,249}):(?P<partition>\d{1,9}):(?P<offset>\d{1,19})"
)
# A tab and newline a value shown on lines of its own keeps; every other character that is not
# printable (controls, bidirectional overrides, unassigned) is escaped.
_LINE_BREAKS = frozenset("\t\n")


@dataclass(frozen=True, slots=True, order=True)
class Coordinates:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


def parse_coordinates(text: str) -> Coordinates:
    """`TOPIC:PARTITION:OFFSET`, as `dlq list` prints them; ValueError names what is wrong."""
    found = _COORDINATES.fullmatch(text)
    if found is None:
        raise ValueError(f"{text!r} is not TOPIC:PARTITION:OFFSET (e.g. course.completed:0:41)")
    return Coordinates(found["topic"], int(found["partition"]), int(found["offset"]))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, read back."""

    at: Coordinates  # where it sits in the dead-letter topic
    key: bytes | None
    value: bytes | None
    headers: Headers  # the failed record's own headers, without the worker's dlq.* ones
    source: Coordinates | None  # where the failed record was consumed; None if not said
    error_class: str
    error_message: str
    failed_at: datetime | None
    truncated: bool
    original_size: int | None


_SOURCE = ("topic", "partition", "offset")


def read(at: Coordinates, key: bytes | None, value: bytes | None, headers: Headers) -> DeadLetter:
    """A dead-letter record as the broker returns it. Never fails: a header the worker did not
    write, or wrote badly, leaves its field unknown (and the letter not replayable)."""
    own = {
        name.lower(): (v or b"").decode("utf-8", "replace")
        for name, v in headers
        if name.lower().startswith(DLQ_HEADER_PREFIX)
    }
    topic, partition, offset = (
        own.get(f"dlq.source.{n}", "") for n in ("topic", "partition", "offset")
    )
    try:
        source: Coordinates | None = parse_coordinates(f"{topic}:{partition}:{offset}")
    except ValueError:
        source = None
    try:
        failed_at: datetime | None = datetime.fromisoformat(own.get("dlq.failed.at", ""))
    except ValueError:
        failed_at = None
    if failed_at is not None and failed_at.tzinfo is None:
        failed_at = None
    size = own.get("dlq.original.size", "")
    return DeadLetter(
        at=at,
        key=key,
        value=value,
        headers=tuple(h for h in headers if not h[0].lower().startswith(DLQ_HEADER_PREFIX)),
        source=source,
        error_class=own.get("dlq.error.class", "") or "?",
        error_message=own.get("dlq.error.message", ""),
        failed_at=failed_at,
        truncated=own.get("dlq.truncated") == "true",
        original_size=int(size) if size.isdecimal() else None,
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on; an empty selection chooses every one."""

    error_classes: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()  # source topics, deployed names
    since: datetime | None = None  # failed at or after
    until: datetime | None = None  # failed before
    sources: frozenset[Coordinates] = field(default_factory=frozenset)

    def chooses(self, letter: DeadLetter) -> bool:
        if self.error_classes and letter.error_class not in self.error_classes:
            return False
        if self.topics and (letter.source is None or letter.source.topic not in self.topics):
            return False
        if self.sources and letter.source not in self.sources:
            return False
        if self.since is None and self.until is None:
            return True
        if letter.failed_at is None:
            return False
        return (self.since is None or letter.failed_at >= self.since) and (
            self.until is None or letter.failed_at < self.until
        )


@dataclass(frozen=True, slots=True)
class Replay:
    """A dead letter's record as it goes back: the same bytes to the same partition."""

    letter: DeadLetter
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Skipped:
    letter: DeadLetter
    reason: str


def plan(
    letters: Iterable[DeadLetter],
    partitions: Mapping[str, int],
    resent_by_owner: Mapping[str, str] | None = None,
) -> Iterator[Replay | Skipped]:
    """What a replay does with each chosen letter, in source order (`source_order`).

    `partitions` holds the number of partitions of each input topic of this deployment;
    `resent_by_owner` the input topics whose letters are never replayed, with who sends them
    again instead. Skipped: a truncated copy (its bytes are gone; the source record is still
    where the letter says while the topic's retention keeps it), a letter that does not say
    which input it came from or names a partition that no longer exists, a topic in
    `resent_by_owner`, and a second copy of a record already chosen (a worker that stopped after
    writing a dead letter and before committing wrote it again)."""
    owners = resent_by_owner or {}
    seen: set[Coordinates] = set()
    for letter in source_order(letters):
        source = letter.source
        if letter.truncated:
            yield Skipped(letter, "truncated copy: the record's bytes are not all here")
        elif source is None:
            yield Skipped(letter, "no dlq.source.* headers: not a dead letter of this worker")
        elif source.topic not in partitions:
            yield Skipped(letter, f"{source.topic} is not an input topic of this deployment")
        elif source.topic in owners:
            yield Skipped(letter, owners[source.topic])
        elif source.partition >= partitions[source.topic]:
            yield Skipped(letter, f"{source.topic} has no partition {source.partition} now")
        elif source in seen:
            yield Skipped(letter, "another copy of a record chosen above")
        else:
            seen.add(source)
            yield Replay(
                letter, source.topic, source.partition, letter.key, letter.value, letter.headers
            )


def source_order(letters: Iterable[DeadLetter]) -> Iterator[DeadLetter]:
    """The letters as the worker first met them: each source partition's by offset, and the
    partitions merged by when their next letter failed. A student's events on several topics
    share a partition number, not a topic: failure time keeps a credit replayed before the
    redemption that failed after it."""
    queues: dict[tuple[str, int], list[DeadLetter]] = defaultdict(list)
    unplaced = []
    for letter in letters:
        if letter.source is None:
            unplaced.append(letter)
        else:
            queues[letter.source.topic, letter.source.partition].append(letter)
    ordered = [sorted(q, key=lambda letter: (letter.source, letter.at)) for q in queues.values()]
    heads = [(failure_order(q[0]), n, 0) for n, q in enumerate(ordered)]
    heapq.heapify(heads)
    while heads:
        _, n, i = heapq.heappop(heads)
        yield ordered[n][i]
        if i + 1 < len(ordered[n]):
            heapq.heappush(heads, (failure_order(ordered[n][i + 1]), n, i + 1))
    yield from sorted(unplaced, key=lambda letter: letter.at)


def failure_order(letter: DeadLetter) -> tuple[bool, datetime, Coordinates]:
    """Oldest failure first; letters of one batch (one time) in dead-letter order."""
    return (letter.failed_at is None, letter.failed_at or _NEVER, letter.at)


_NEVER = datetime.min.replace(tzinfo=UTC)


def printable(data: bytes | str | None, *, lines: bool = False) -> str:
    """Text safe for a terminal: bytes as UTF-8 (invalid bytes as \\xNN), and every character
    that is not printable escaped (control characters, bidirectional overrides), so a crafted
    record can neither move the cursor, nor reorder what is shown, nor forge another line
    (`lines` keeps its newlines and tabs)."""
    if data is None:
        return "-"
    text = data if isinstance(data, str) else data.decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (lines and c in _LINE_BREAKS) else _escape(c) for c in text
    )


def _escape(character: str) -> str:
    return character.encode("unicode_escape").decode()


def line(letter: DeadLetter) -> str:
    """`dlq list`: one line per dead letter, its source first (what `dlq show` takes)."""
    when = letter.failed_at.isoformat(timespec="seconds") if letter.failed_at else "?"
    flag = "\ttruncated" if letter.truncated else ""
    message = printable(letter.error_message)
    return (
        f"{letter.source or '?'}\tkey={printable(letter.key)}\t{when}\t"
        f"{printable(letter.error_class)}: {message[:160]}{flag}"
    )


def details(letter: DeadLetter) -> list[str]:
    """`dlq show`: everything the letter holds, one field a line, its value last and whole."""
    size = "" if letter.original_size is None else f" (original {letter.original_size} bytes)"
    value = letter.value
    rows = [
        f"source      {letter.source or '?'}",
        f"dead letter {letter.at}",
        f"failed at   {letter.failed_at.isoformat() if letter.failed_at else '?'}",
        f"error       {printable(letter.error_class)}: {printable(letter.error_message)}",
        f"truncated   {'yes' + size if letter.truncated else 'no'}",
        f"key         {printable(letter.key)}",
    ]
    rows += [f"header      {printable(name)}={printable(v)}" for name, v in letter.headers]
    rows.append(f"value       {'-' if value is None else f'{len(value)} bytes'}")
    if value:
        rows += printable(value, lines=True).split("\n")
    return rows
