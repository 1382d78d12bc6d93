"""The worker's consumer group as the broker sees it: its members, what each is assigned, and
how far the group's committed offsets are behind each input partition (`payment-worker status`).
Read without joining the group."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaError, for_code

from worker.messaging.clients import connection, partitions_of
from worker.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    assigned: tuple[TopicPartition, ...]


@dataclass(frozen=True, slots=True)
class Position:
    """One partition: its log start and end, and the group's committed offset (None: never)."""

    start: int
    end: int
    committed: int | None

    @property
    def lag(self) -> int:
        """What is left to read: from the committed offset, or the log start when the group
        never committed or retention deleted records it had not read."""
        return max(0, self.end - max(self.start, self.committed or 0))

    @property
    def skipped_by_retention(self) -> bool:
        """Records the group never read were deleted before it came to them."""
        return self.committed is not None and self.committed < self.start


@dataclass(frozen=True, slots=True)
class GroupView:
    group: str
    state: str  # Stable, PreparingRebalance, CompletingRebalance, Empty or Dead
    members: tuple[Member, ...]
    positions: dict[TopicPartition, Position]
    missing_topics: tuple[str, ...]  # inputs the cluster does not have (yet)


async def describe(settings: Settings, topics: Sequence[str]) -> GroupView:
    """The group `KAFKA_CONSUMER_GROUP` and its position in `topics`, now."""
    group = settings.kafka_consumer_group
    found = await partitions_of(settings, topics)
    partitions = [TopicPartition(t, p) for t in topics for p in found.get(t, [])]
    admin = AIOKafkaAdminClient(**connection(settings), client_id="payment-worker-admin")
    consumer = AIOKafkaConsumer(
        **connection(settings), client_id="payment-worker-admin", isolation_level="read_committed"
    )
    await admin.start()
    try:
        await consumer.start()
        # Within status's own bound (15 s), so the coordinator's last error is what is said.
        state, members, committed = await _retried(
            lambda: _group(admin, group, partitions), within=8.0
        )
        starts = await consumer.beginning_offsets(partitions) if partitions else {}
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
        await admin.close()
    return GroupView(
        group=group,
        state=state,
        members=members,
        positions={
            tp: Position(starts[tp], ends[tp], _offset(committed.get(tp))) for tp in partitions
        },
        missing_topics=tuple(t for t in topics if t not in found),
    )


async def _group(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition]
) -> tuple[str, tuple[Member, ...], dict[TopicPartition, object]]:
    """The group's state, members and committed offsets; a KafkaError the broker marks
    retriable while its coordinator loads or moves."""
    described, committed = await asyncio.gather(
        admin.describe_consumer_groups([group]),
        admin.list_consumer_group_offsets(group, partitions=partitions or None),
    )
    state, members = _members(described, group)  # raises the group's own error first
    if partitions and not committed:
        # The broker answers every partition asked for (-1 when never committed); none at all
        # is a group-level error aiokafka 0.14 does not raise (a coordinator loading or moved).
        raise GroupCoordinatorNotAvailableError(f"no committed offsets answered for {group}")
    return state, members, committed


async def _retried(ask: Callable[[], Awaitable[T]], within: float = 15.0) -> T:
    """`ask` again while the broker says to (a coordinator still loading, or not yet chosen
    for a group never seen), for at most `within` seconds; then its last error stands."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await ask()
        except KafkaError as exc:
            if not exc.retriable or asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.5)


def _offset(meta: object) -> int | None:
    offset = getattr(meta, "offset", -1)
    return offset if isinstance(offset, int) and offset >= 0 else None


def _members(responses: Sequence[object], group: str) -> tuple[str, tuple[Member, ...]]:
    """The group's state and members from DescribeGroups' raw answer (aiokafka parses only the
    envelope; each assignment is the consumer protocol's bytes)."""
    for response in responses:
        for described in response.to_object()["groups"]:  # type: ignore[attr-defined]
            if described["group"] != group:
                continue
            if described["error_code"]:
                raise for_code(described["error_code"])(f"describing the group {group}")
            members = []
            for member in described["members"]:
                raw = member["member_assignment"]
                assigned = ConsumerProtocolMemberAssignment.decode(raw).partitions() if raw else []
                members.append(
                    Member(
                        member["member_id"],
                        member["client_id"],
                        member["client_host"],
                        tuple(sorted(assigned)),
                    )
                )
            return described["state"], tuple(sorted(members, key=lambda m: m.member_id))
    return "Dead", ()
