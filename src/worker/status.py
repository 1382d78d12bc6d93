"""`payment-worker status`: the group, its partitions and lag, the outbox and the parked and
dead-lettered messages, on one screen. Read from the broker and the database, never joining the
group; each dependency that does not answer is named on a line of its own."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import TopicPartition

from worker import admin
from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, with_prefix
from worker.db.outbox import Backlog
from worker.errors import one_line
from worker.messaging.group import GroupView, Member, describe
from worker.settings import Settings

TIMEOUT_SECONDS = 15.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Status:
    group: GroupView | None
    backlog: Backlog | None
    errors: tuple[str, ...]  # one line per dependency that did not answer


async def gather(settings: Settings) -> Status:
    """Ask the broker and the database at once; each has `TIMEOUT_SECONDS`."""
    topics = (*with_prefix(settings.kafka_topic_prefix, INPUT_TOPICS), _dlq(settings))
    group, backlog = await asyncio.gather(
        _within(describe(settings, topics)), _within(admin.backlog(settings))
    )
    errors = []
    if isinstance(group, BaseException):
        errors.append(f"kafka ({settings.kafka_bootstrap_servers}) failed: {one_line(group)}")
    if isinstance(backlog, BaseException):
        errors.append(f"database failed: {one_line(backlog)}")
    return Status(
        group=None if isinstance(group, BaseException) else group,
        backlog=None if isinstance(backlog, BaseException) else backlog,
        errors=tuple(errors),
    )


async def _within(step: Awaitable[T]) -> T | Exception:
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            return await step
    except TimeoutError:
        return TimeoutError(f"no answer in {TIMEOUT_SECONDS:g} s")
    except Exception as exc:  # noqa: BLE001 - said on its line; the other dependency is shown
        return exc


def _dlq(settings: Settings) -> str:
    return settings.kafka_topic_prefix + DLQ_TOPIC


def render(status: Status, settings: Settings) -> list[str]:
    """The screen, as lines."""
    lines: list[str] = []
    view = status.group
    if view is not None:
        lines += _group_lines(view, _dlq(settings))
        lines += _lag_lines(view, _dlq(settings))
    if status.backlog is not None:
        found = status.backlog
        lines.append(
            f"outbox: {found.queued} queued, oldest {found.oldest_seconds:.1f} s; "
            f"parked: {found.parked}" + ("  (payment-worker parked list)" if found.parked else "")
        )
    if view is not None:
        dlq = _dlq(settings)
        letters = sum(p.end - p.start for tp, p in view.positions.items() if tp.topic == dlq)
        lines.append(
            f"dead letters: {letters} in {dlq}" + ("  (payment-worker dlq list)" if letters else "")
        )
    lines += [f"error: {error}" for error in status.errors]
    return lines


def _group_lines(view: GroupView, dlq: str) -> list[str]:
    count = len(view.members)
    lines = [f"group {view.group}: {view.state}, {count} member{'' if count == 1 else 's'}"]
    # The broker gives the members' assignments only once a rebalance is over.
    settled = view.state == "Stable"
    for member in view.members:
        lines.append(f"  {member.member_id}  {member.host}")
        if settled:
            lines += [f"    {text}" for text in _assignment(member)]
    if view.members and not settled:
        lines.append("  partitions: being assigned (a rebalance is going on)")
    owned = {tp for member in view.members for tp in member.assigned}
    inputs = [tp for tp in view.positions if tp.topic != dlq]
    unowned = [tp for tp in inputs if tp not in owned]
    if view.members and settled and unowned:
        lines.append(f"  unassigned: {_partition_list(unowned)}")
    if view.missing_topics:
        lines.append(f"  topics not created yet: {', '.join(view.missing_topics)}")
    return lines


def _assignment(member: Member) -> list[str]:
    """What a member owns, grouped by partition set: range assignment gives each member the
    same partitions of every input topic, which then reads as one line."""
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in member.assigned:
        by_topic[tp.topic].append(tp.partition)
    by_set: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for topic, partitions in by_topic.items():
        by_set[tuple(sorted(partitions))].append(topic)
    if not by_set:
        return ["no partitions"]
    return [
        f"partitions {_ranges(partitions)} of {len(topics)} topic{'' if len(topics) == 1 else 's'}"
        + ("" if len(topics) > 3 else f" ({', '.join(sorted(topics))})")
        for partitions, topics in sorted(by_set.items())
    ]


def _ranges(numbers: Sequence[int]) -> str:
    """0,1,2,5 as `0-2,5`."""
    spans: list[list[int]] = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _partition_list(partitions: Sequence[TopicPartition]) -> str:
    by_topic: dict[str, list[int]] = defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    return "; ".join(f"{t} {_ranges(sorted(p))}" for t, p in by_topic.items())


def _lag_lines(view: GroupView, dlq: str) -> list[str]:
    rows = defaultdict(list)
    for tp, position in view.positions.items():
        if tp.topic != dlq:
            rows[tp.topic].append((tp.partition, position))
    total = sum(p.lag for positions in rows.values() for _, p in positions)
    width = max((len(topic) for topic in rows), default=5)
    lines = [
        f"lag: {total} message{'' if total == 1 else 's'} behind the committed offsets",
        f"  {'topic':<{width}}  partitions  end offsets      lag  most behind",
    ]
    for topic, positions in rows.items():
        lag = sum(p.lag for _, p in positions)
        worst, most = max(((p.lag, n) for n, p in positions), default=(0, 0))
        never = sum(1 for _, p in positions if p.committed is None and p.end > p.start)
        deleted = sum(1 for _, p in positions if p.skipped_by_retention)
        note = f"p{most}: {worst}" if worst else "-"
        if never:
            note += f"  ({never} never committed)"
        if deleted:
            note += f"  ({deleted} deleted by retention before the group read them)"
        end = sum(p.end for _, p in positions)
        lines.append(f"  {topic:<{width}}  {len(positions):>10}  {end:>11}  {lag:>7}  {note}")
    return lines
