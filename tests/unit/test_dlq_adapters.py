"""The broker side of `payment-worker dlq` and `status` against small fakes of aiokafka's
clients: a read that stops moving ends with one line, a replay refused half-way says exactly
what was sent, a coordinator still loading is asked again, and a replay's plan with a topic
prefix leaves webhooks to their owner. (The real broker: tests/e2e/test_admin_commands.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    TopicAuthorizationFailedError,
)
from aiokafka.structs import OffsetAndMetadata

from worker import dlq_command
from worker.core.dead_letters import Coordinates, DeadLetter, Replay, Selection, read
from worker.core.records import InboundRecord, dead_letter
from worker.messaging import dead_letters, group
from worker.settings import Settings

FAILED_AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
DLQ = TopicPartition("payment-worker.dlq", 0)


def settings(prefix: str = "") -> Settings:
    return Settings.model_validate(
        {"database_url": "postgresql://x@127.0.0.1/x", "kafka_topic_prefix": prefix}
    )


class Record:
    def __init__(self, offset: int) -> None:
        message = dead_letter(
            InboundRecord("course.completed", 0, offset, b"k", b"{}", ()),
            ValueError("x"),
            FAILED_AT,
        )
        self.offset, self.key, self.value, self.headers = offset, b"k", b"{}", message.headers


class Consumer:
    """A dead-letter topic of `end` letters in one partition; the broker goes away after
    `answers` fetches (fetches return nothing and positions stay, or hang if `hang`)."""

    def __init__(self, end: int, answers: int, *, hang: bool = False) -> None:
        self.end, self.answers, self.hang, self.at = end, answers, hang, 0

    def __call__(self, **_: Any) -> Consumer:
        return self

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, _: object) -> None: ...
    async def seek_to_beginning(self, *_: object) -> None: ...

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return dict.fromkeys(partitions, self.end)

    async def getmany(self, *_: object, timeout_ms: int) -> dict[Any, list[Record]]:
        if self.answers == 0:
            await asyncio.sleep(0.1)  # an empty fetch: each round short, the stall is their sum
            return {}
        self.answers -= 1
        self.at += 1
        return {DLQ: [Record(self.at - 1)]}

    async def position(self, _: object) -> int:
        if self.answers == 0 and self.hang:
            await asyncio.Event().wait()  # as aiokafka resetting a position with no broker
        return self.at


@pytest.fixture
def one_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    async def partitions_of(_: object, topics: Sequence[str]) -> dict[str, list[int]]:
        return {topic: [0] for topic in topics}

    monkeypatch.setattr(dead_letters, "partitions_of", partitions_of)
    monkeypatch.setattr(dead_letters, "STALL_SECONDS", 0.5)


async def letters(consumer: Consumer) -> list[DeadLetter]:
    found = []
    async for letter in dead_letters.read_all(settings(), lambda done, total: None):
        found.append(letter)
    return found


@pytest.mark.usefixtures("one_partition")
async def test_a_read_ends_at_the_end_it_found(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = Consumer(end=3, answers=5)
    monkeypatch.setattr(dead_letters, "AIOKafkaConsumer", consumer)

    found = await letters(consumer)

    assert [letter.source for letter in found] == [
        Coordinates("course.completed", 0, n) for n in range(3)
    ]


@pytest.mark.usefixtures("one_partition")
@pytest.mark.parametrize("hang", [False, True], ids=["fetches-empty", "position-hangs"])
async def test_a_read_that_stops_moving_ends_in_one_error(
    monkeypatch: pytest.MonkeyPatch, hang: bool
) -> None:
    consumer = Consumer(end=5, answers=2, hang=hang)
    monkeypatch.setattr(dead_letters, "AIOKafkaConsumer", consumer)

    with pytest.raises(dead_letters.DlqError, match=r"stalled for 0\.5 s after 2 of about 5"):
        await asyncio.wait_for(letters(consumer), timeout=10)


class Producer:
    """Acknowledges every send but those to `refused` partitions."""

    def __init__(self, refused: set[int]) -> None:
        self.refused, self.sent = refused, 0

    def __call__(self, **_: Any) -> Producer:
        return self

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def send(
        self, topic: str, *_: object, partition: int, **__: object
    ) -> asyncio.Future[None]:
        self.sent += 1
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if partition in self.refused:
            answer.set_exception(TopicAuthorizationFailedError(topic))
        else:
            answer.set_result(None)
        return answer


def replays(partitions: Sequence[int]) -> list[Replay]:
    letter = read(Coordinates("payment-worker.dlq", 0, 0), b"k", b"v", ())
    return [Replay(letter, "course.completed", p, b"k", b"v", ()) for p in partitions]


async def test_a_replay_refused_half_way_says_what_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    producer = Producer(refused={7})
    monkeypatch.setattr(dead_letters, "AIOKafkaProducer", producer)
    monkeypatch.setattr(dead_letters, "_IN_FLIGHT", 2)
    acknowledged: list[int] = []

    with pytest.raises(dead_letters.DlqError, match="not authorized to write the source topic"):
        await dead_letters.replay(
            settings(),
            replays([0, 1, 2, 7, 3, 4]),
            lambda done: acknowledged.extend(r.partition for r in done),
        )

    assert acknowledged == [0, 1, 2]  # the chunk holding the refusal: only what was acknowledged
    assert producer.sent == 4  # nothing after that chunk


async def test_nothing_to_replay_connects_to_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dead_letters, "AIOKafkaProducer", None)  # would fail if called
    await dead_letters.replay(settings(), [], lambda done: None)


class Described:
    def __init__(self, error: int = 0) -> None:
        self.error = error

    def to_object(self) -> dict[str, Any]:
        return {
            "groups": [{"error_code": self.error, "group": "g", "state": "Empty", "members": []}]
        }


class Admin:
    """OffsetFetch answers nothing `empty` times (a coordinator loading), then offset 5."""

    def __init__(self, empty: int, error: int = 0) -> None:
        self.empty, self.error, self.asked = empty, error, 0

    async def describe_consumer_groups(self, _: object) -> list[Described]:
        return [Described(self.error)]

    async def list_consumer_group_offsets(self, *_: object, **__: object) -> dict[Any, Any]:
        self.asked += 1
        if self.empty:
            self.empty -= 1
            return {}
        return {TopicPartition("t", 0): OffsetAndMetadata(5, "")}


async def test_a_coordinator_still_loading_is_asked_again() -> None:
    admin = Admin(empty=2)

    state, members, committed = await group._retried(
        lambda: group._group(admin, "g", [TopicPartition("t", 0)])  # type: ignore[arg-type]
    )

    assert (state, members, admin.asked) == ("Empty", (), 3)
    assert committed == {TopicPartition("t", 0): OffsetAndMetadata(5, "")}


async def test_asking_again_has_a_deadline_and_a_refusal_is_not_retried() -> None:
    with pytest.raises(GroupCoordinatorNotAvailableError):
        await group._retried(
            lambda: group._group(Admin(empty=10**6), "g", [TopicPartition("t", 0)]),  # type: ignore[arg-type]
            within=1.0,
        )
    refusing = Admin(empty=10**6, error=GroupAuthorizationFailedError.errno)
    with pytest.raises(GroupAuthorizationFailedError):
        await group._retried(
            lambda: group._group(refusing, "g", [TopicPartition("t", 0)]),  # type: ignore[arg-type]
            within=60,
        )
    assert refusing.asked == 1


async def test_a_replay_under_a_prefix_leaves_webhooks_to_their_owner(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def letter(topic: str, at: int) -> DeadLetter:
        message = dead_letter(
            InboundRecord(topic, 0, 1, b"k", b"{}", ()), ValueError("x"), FAILED_AT
        )
        return read(Coordinates("p.payment-worker.dlq", 0, at), b"k", b"{}", message.headers)

    async def read_all(*_: object) -> AsyncIterator[DeadLetter]:
        yield letter("p.payment.webhook.received", 0)
        yield letter("p.course.completed", 1)

    async def partitions_of(_: object, topics: Sequence[str]) -> dict[str, list[int]]:
        return {topic: [0, 1, 2] for topic in topics}

    monkeypatch.setattr(dlq_command, "read_all", read_all)
    monkeypatch.setattr(dlq_command, "partitions_of", partitions_of)

    code = await dlq_command._replay(settings("p."), Selection(), dry_run=True)

    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "skipped p.payment.webhook.received:0:1: a webhook: ask the provider to send it again",
        "would replay p.course.completed:0:1",
    ]
