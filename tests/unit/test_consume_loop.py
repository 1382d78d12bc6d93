"""The consume loop over a fake consumer: what is applied, published and committed, in which order.

Offsets are committed after the batch is applied and its results published, per partition, only
for partitions this worker still owns; the next batch is applied meanwhile, but its results wait
for that commit; a rebalance waits for the batch in hand; a record the client cannot parse is
dead-lettered by its coordinates without losing any other record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaTimeoutError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from tests.support import eventually
from tests.unit.fakes import FakeConsumer
from worker.core.messages import OutgoingMessage
from worker.core.records import InboundRecord
from worker.messaging import consume
from worker.messaging.consume import ConsumeLoop, aligned
from worker.messaging.unreadable import UnreadableHandler
from worker.metrics import Metrics

TOPICS = ("course.completed", "coins.redemption.requested")
CREDITS = TopicPartition("course.completed", 0)
MORE_CREDITS = TopicPartition("course.completed", 1)
REDEMPTIONS = TopicPartition("coins.redemption.requested", 0)

Applied = tuple[str, int, int]
T = TypeVar("T")


class Applier:
    """The batch processor: keeps each batch it applied as (topic, partition, offset), after
    running `during` (what happens while a batch is in hand)."""

    def __init__(self, during: Callable[[int], Awaitable[None]] | None = None) -> None:
        self.batches: list[list[Applied]] = []
        self.queued_all: list[bool] = []
        self._during = during

    async def __call__(
        self, records: Sequence[InboundRecord], queue_all: bool
    ) -> list[OutgoingMessage]:
        self.queued_all.append(queue_all)
        if self._during is not None:
            await self._during(len(self.batches))
        self.batches.append([(r.topic, r.partition, r.offset) for r in records])
        return [OutgoingMessage("coins.credited", r.key, r.value) for r in records]

    @property
    def applied(self) -> list[Applied]:
        return [record for batch in self.batches for record in batch]


class Publisher:
    """Keeps each batch of results it was handed, with the offsets committed at that moment,
    after running `during` (what happens while a batch is being published)."""

    def __init__(
        self, consumer: FakeConsumer, during: Callable[[int], Awaitable[None]] | None = None
    ) -> None:
        self.batches: list[list[bytes | None]] = []
        self.committed_before: list[int] = []
        self._consumer = consumer
        self._during = during

    async def __call__(self, messages: Sequence[OutgoingMessage]) -> None:
        self.committed_before.append(len(self._consumer.commits))
        if self._during is not None:
            await self._during(len(self.batches))
        self.batches.append([m.value for m in messages])


class HoldingPublisher(Publisher):
    """A Publisher that holds the results holding a message `value` until `release` is set
    (`publishing` is set when it starts to)."""

    def __init__(self, consumer: FakeConsumer, value: bytes) -> None:
        super().__init__(consumer)
        self._value = value
        self.publishing, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, messages: Sequence[OutgoingMessage]) -> None:
        if any(m.value == self._value for m in messages):
            self.publishing.set()
            await self.release.wait()
        await super().__call__(messages)


async def no_dead_letters(topic: str, partition: int, offset: int, error: BaseException) -> None:
    raise AssertionError(f"nothing here is unreadable: {topic}-{partition}@{offset}")


def consume_loop(
    consumer: FakeConsumer,
    process: Applier,
    stop: asyncio.Event,
    *,
    until: Callable[[], bool] = lambda: True,
    metrics: Metrics | None = None,
    dead_letter: UnreadableHandler = no_dead_letters,
    publish: Publisher | None = None,
    ordered_together: tuple[str, ...] = (),
    coin_results_queued: Callable[[], Awaitable[bool]] | None = None,
    lanes: int = 1,
) -> ConsumeLoop:
    """A loop that sets `stop` once a batch is committed and `until()` holds."""

    def on_committed() -> None:
        if until():
            stop.set()

    return ConsumeLoop(
        consumer,  # type: ignore[arg-type]
        TOPICS,
        process,
        publish or Publisher(consumer),
        metrics or Metrics(CollectorRegistry()),
        dead_letter=dead_letter,
        ordered_together=ordered_together,
        **({"coin_results_queued": coin_results_queued} if coin_results_queued else {}),
        max_records=100,
        max_wait_ms=5,
        on_committed=on_committed,
        lanes=lanes,
    )


async def within_deadline(step: Awaitable[T]) -> T:
    """A step that should end soon; one that hangs fails the test instead."""
    return await asyncio.wait_for(step, timeout=5)


async def until(holds: Callable[[], bool]) -> None:
    """Wait until `holds()`, the loop's tasks running meanwhile; one that never does fails."""

    async def check() -> None:
        assert holds()

    await eventually(check, within=5, interval=0.001)


async def owning(consumer: FakeConsumer, *partitions: TopicPartition) -> FakeConsumer:
    await consumer.rebalance(partitions)
    return consumer


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_batch_is_applied_in_timestamp_order_and_committed_per_partition(
    lanes: int,
) -> None:
    consumer = FakeConsumer()
    for n in range(5):
        consumer.append(CREDITS, b"c%d" % n, timestamp=10 * n)
    consumer.append(REDEMPTIONS, b"r0", timestamp=25)  # produced after credit 2, before 3
    consumer.append(REDEMPTIONS, b"r1", timestamp=45)
    consumer.committed_offsets[CREDITS] = 2  # credits 0 and 1 were applied before
    metrics = Metrics(CollectorRegistry())
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, metrics=metrics, lanes=lanes)
    await owning(consumer, CREDITS, MORE_CREDITS, REDEMPTIONS)

    await within_deadline(loop.run(stop))

    assert consumer.topics == list(TOPICS)
    assert consumer.listener is loop.guard
    credits, redemptions = CREDITS.topic, REDEMPTIONS.topic
    assert applier.batches == [
        [(credits, 0, 2), (redemptions, 0, 0), (credits, 0, 3), (credits, 0, 4),
         (redemptions, 0, 1)],
    ]  # fmt: skip
    # MORE_CREDITS had nothing in the batch: its committed offset is not touched.
    assert consumer.commits == [{CREDITS: 5, REDEMPTIONS: 2}]
    assert metrics.registry.get_sample_value("payment_worker_batch_size_sum") == 5


async def test_each_records_age_is_observed_in_seconds_once_its_batch_is_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_ms = 1_800_000_000_000
    monkeypatch.setattr(consume.time, "time", lambda: now_ms / 1000)
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a", timestamp=now_ms - 300)  # 0.3 s old
    consumer.append(CREDITS, b"b", timestamp=now_ms - 2_000)  # 2 s old
    consumer.append(REDEMPTIONS, b"c", timestamp=now_ms + 5_000)  # a producer's clock ahead: 0
    metrics = Metrics(CollectorRegistry())
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, metrics=metrics)
    await owning(consumer, CREDITS, REDEMPTIONS)

    await within_deadline(loop.run(stop))

    def up_to(le: str) -> float | None:
        return metrics.registry.get_sample_value(
            "payment_worker_event_age_seconds_bucket", {"le": le}
        )

    assert [up_to(le) for le in ("0.01", "0.25", "0.5", "1.0", "2.5", "+Inf")] == [
        1, 1, 2, 2, 3, 3,
    ]  # fmt: skip
    age_sum = metrics.registry.get_sample_value("payment_worker_event_age_seconds_sum")
    assert age_sum == pytest.approx(2.3)


@pytest.mark.parametrize(
    ("lost", "committed"),
    [
        ({MORE_CREDITS}, [{CREDITS: 2}]),
        ({CREDITS, MORE_CREDITS}, []),
    ],
)
async def test_a_partition_lost_while_its_batch_was_applied_is_not_committed(
    lost: set[TopicPartition], committed: list[dict[TopicPartition, int]]
) -> None:
    consumer = FakeConsumer()
    for tp in (CREDITS, MORE_CREDITS):
        consumer.append(tp, b"a")
        consumer.append(tp, b"b")

    async def group_moves_on(_: int) -> None:
        consumer.owned -= lost  # the fake, like aiokafka, refuses to commit what is not owned

    stop = asyncio.Event()
    applier = Applier(group_moves_on)
    loop = consume_loop(consumer, applier, stop)
    await owning(consumer, CREDITS, MORE_CREDITS)

    await within_deadline(loop.run(stop))

    assert len(applier.applied) == 4
    assert consumer.commits == committed


async def test_a_commit_refused_after_a_rebalance_is_counted_and_consuming_goes_on() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"first")
    consumer.refuse_commits = CommitFailedError("the group rebalanced")

    async def then_another(batch: int) -> None:
        if batch == 0:
            consumer.append(CREDITS, b"second")
        else:
            consumer.refuse_commits = None

    metrics = Metrics(CollectorRegistry())
    applier, stop = Applier(then_another), asyncio.Event()
    loop = consume_loop(
        consumer, applier, stop, until=lambda: len(applier.batches) == 2, metrics=metrics
    )
    await owning(consumer, CREDITS)

    await within_deadline(loop.run(stop))

    assert applier.batches == [[(CREDITS.topic, 0, 0)], [(CREDITS.topic, 0, 1)]]
    assert consumer.commits == [{CREDITS: 2}]
    assert metrics.registry.get_sample_value("payment_worker_offset_commit_failures_total") == 1


@pytest.mark.parametrize("lanes", [1, 2])
@pytest.mark.parametrize("failing", ["apply", "publish"])
async def test_a_batch_that_fails_to_apply_or_publish_stops_consuming_and_commits_nothing(
    failing: str, lanes: int
) -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"x")

    async def fails(_: int) -> None:
        raise RuntimeError(f"could not {failing}")

    stop = asyncio.Event()
    if failing == "apply":
        loop = consume_loop(consumer, Applier(fails), stop, lanes=lanes)
    else:
        publisher = Publisher(consumer, fails)
        loop = consume_loop(consumer, Applier(), stop, publish=publisher, lanes=lanes)
    await owning(consumer, CREDITS)

    with pytest.raises(RuntimeError, match=f"could not {failing}"):
        await within_deadline(loop.run(stop))
    assert consumer.commits == []


async def test_a_rebalance_waits_until_the_batch_in_hand_is_committed() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    consumer.append(CREDITS, b"b")
    in_hand, release = asyncio.Event(), asyncio.Event()

    async def held(_: int) -> None:
        in_hand.set()
        await release.wait()

    stop = asyncio.Event()
    loop = consume_loop(consumer, Applier(held), stop)
    await owning(consumer, CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(in_hand.wait())

    rebalance = asyncio.create_task(consumer.rebalance([REDEMPTIONS]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not rebalance.done(), "the partitions were revoked with a batch in hand"
    assert consumer.owned == {CREDITS}
    assert not loop.guard.joined  # revoking has begun

    release.set()
    await within_deadline(rebalance)
    await within_deadline(consuming)
    assert consumer.commits == [{CREDITS: 2}]
    assert consumer.owned == {REDEMPTIONS}
    assert loop.guard.joined


@pytest.mark.parametrize("lanes", [1, 2])
async def test_stop_lets_the_batch_in_hand_finish_and_takes_no_other(lanes: int) -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    stop = asyncio.Event()

    async def stopped_meanwhile(_: int) -> None:
        stop.set()
        consumer.append(CREDITS, b"after the stop")

    applier = Applier(stopped_meanwhile)
    loop = consume_loop(consumer, applier, stop, lanes=lanes)
    await owning(consumer, CREDITS)

    await within_deadline(loop.run(stop))

    assert applier.applied == [(CREDITS.topic, 0, 0)]
    assert consumer.commits == [{CREDITS: 1}]


async def test_in_group_needs_partitions_and_a_known_coordinator() -> None:
    consumer = FakeConsumer()
    metrics = Metrics(CollectorRegistry())
    loop = consume_loop(consumer, Applier(), asyncio.Event(), metrics=metrics)
    consumer._coordinator = SimpleNamespace(coordinator_id=None)  # type: ignore[attr-defined]
    assert not loop.in_group()

    await owning(consumer, CREDITS, REDEMPTIONS)
    assert metrics.registry.get_sample_value("payment_worker_assigned_partitions") == 2
    assert not loop.in_group()  # the coordinator is not known
    consumer._coordinator.coordinator_id = 1  # type: ignore[attr-defined]
    assert loop.in_group()


@pytest.mark.parametrize("lanes", [1, 2])
async def test_an_unreadable_record_is_dead_lettered_and_no_other_record_is_lost(
    lanes: int,
) -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"before")
    bad = consumer.append_unreadable(CREDITS)
    consumer.append(CREDITS, b"after")
    # Taken in the call that fails, then dropped by it: they must be read again.
    consumer.append(MORE_CREDITS, b"other 0")
    consumer.append(MORE_CREDITS, b"other 1")
    dead: list[tuple[str, int, int, str]] = []

    async def dead_letter(topic: str, partition: int, offset: int, error: BaseException) -> None:
        dead.append((topic, partition, offset, type(error).__name__))

    stop = asyncio.Event()
    applier = Applier()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        until=lambda: len(applier.applied) == 4,
        dead_letter=dead_letter,
        lanes=lanes,
    )
    await owning(consumer, CREDITS, MORE_CREDITS)

    await within_deadline(loop.run(stop))

    assert dead == [(CREDITS.topic, 0, bad, "UnicodeDecodeError")]
    credits = CREDITS.topic
    assert sorted(applier.applied) == [(credits, 0, 0), (credits, 0, 2), (credits, 1, 0),
                                       (credits, 1, 1)]  # fmt: skip
    assert consumer.committed_offsets == {CREDITS: 3, MORE_CREDITS: 2}


async def test_results_go_out_before_the_offsets_commit_and_the_next_batch_applies_meanwhile() -> (
    None
):
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    publishing, release = asyncio.Event(), asyncio.Event()

    async def first_held(batch: int) -> None:
        if batch == 0:
            consumer.append(CREDITS, b"b")  # the next batch, applied while this one is held
            publishing.set()
            await release.wait()

    second_applied = asyncio.Event()

    async def note_the_second(batch: int) -> None:
        if batch == 1:
            second_applied.set()

    applier, stop = Applier(note_the_second), asyncio.Event()
    publisher = Publisher(consumer, first_held)
    loop = consume_loop(
        consumer, applier, stop, publish=publisher, until=lambda: len(consumer.commits) == 2
    )
    await owning(consumer, CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(publishing.wait())
    await within_deadline(second_applied.wait())  # applied while the first is still held
    for _ in range(20):  # let the loop try to go further, were it able to
        await asyncio.sleep(0)

    assert applier.batches == [[(CREDITS.topic, 0, 0)], [(CREDITS.topic, 0, 1)]]
    assert publisher.batches == []  # the second batch's results wait for the first's
    assert consumer.commits == []  # nothing commits before its results are taken

    release.set()
    await within_deadline(consuming)
    assert publisher.batches == [[b"a"], [b"b"]]
    assert publisher.committed_before == [0, 1]  # batch 2 published after batch 1 committed
    assert consumer.commits == [{CREDITS: 1}, {CREDITS: 2}]


def partitions(**counts: int) -> Callable[[str], set[int] | None]:
    return lambda topic: set(range(counts[topic])) if topic in counts else None


def test_aligned_needs_one_partition_count_and_the_same_numbers_of_every_topic() -> None:
    a0, a1, b0, b1 = (TopicPartition(t, p) for t in "ab" for p in (0, 1))
    two_each = partitions(a=2, b=2)
    assert aligned({a0, b0}, ("a", "b"), two_each)
    assert aligned({a0, a1, b0, b1}, ("a", "b"), two_each)
    assert aligned(set(), ("a", "b"), two_each)
    assert not aligned({a0, b1}, ("a", "b"), two_each)  # round robin can do this
    assert not aligned({a0}, ("a", "b"), two_each)
    assert not aligned({a0, b0}, ("a", "b"), partitions(a=2, b=3))
    assert not aligned({a0, b0}, ("a", "b"), partitions(a=2))  # b's metadata unknown
    assert aligned({a0, TopicPartition("other", 5)}, ("a",), partitions(a=2))
    assert aligned({TopicPartition("other", 5)}, ("a", "b"), partitions())  # none of them here


async def test_an_unaligned_assignment_queues_every_result_in_the_outbox() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    consumer.append(REDEMPTIONS, b"b")
    consumer.partitions_of = {CREDITS.topic: 2, REDEMPTIONS.topic: 2}
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, ordered_together=TOPICS)

    await owning(consumer, CREDITS, TopicPartition(REDEMPTIONS.topic, 1))
    await within_deadline(loop.run(stop))
    assert applier.queued_all == [True]

    consumer.append(CREDITS, b"c")
    stop.clear()
    await owning(consumer, CREDITS, REDEMPTIONS)
    await within_deadline(loop.run(stop))
    assert applier.queued_all == [True, False]


async def test_a_rebalance_after_run_failed_returns_without_a_cancellation() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    publishing = asyncio.Event()

    async def hangs(_: int) -> None:
        publishing.set()
        await asyncio.Event().wait()

    async def second_batch_fails(batch: int) -> None:
        if batch == 1:
            raise RuntimeError("the database is gone for good")
        consumer.append(CREDITS, b"b")

    stop = asyncio.Event()
    loop = consume_loop(
        consumer, Applier(second_batch_fails), stop, publish=Publisher(consumer, hangs)
    )
    await owning(consumer, CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(publishing.wait())
    with pytest.raises(RuntimeError, match="gone for good"):
        await within_deadline(consuming)

    await within_deadline(consumer.rebalance([]))  # the listener returns: no CancelledError
    assert consumer.commits == []


@dataclass
class HeldPublish:
    """A loop whose first batch is being published, held until `release` is set (then it
    fails, when asked to); a rebalance to `moving_to` is under way, waiting for it."""

    consumer: FakeConsumer
    stop: asyncio.Event
    consuming: asyncio.Task[None]
    release: asyncio.Event
    rebalance: asyncio.Task[None]


async def publish_held(moving_to: list[TopicPartition], *, fails: bool = False) -> HeldPublish:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    publishing, release, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def held(_: int) -> None:
        publishing.set()
        await release.wait()
        if fails:
            raise RuntimeError("the producer is gone")

    loop = consume_loop(consumer, Applier(), stop, publish=Publisher(consumer, held))
    await owning(consumer, CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(publishing.wait())
    rebalance = asyncio.create_task(consumer.rebalance(moving_to))
    for _ in range(20):
        await asyncio.sleep(0)
    return HeldPublish(consumer, stop, consuming, release, rebalance)


async def test_a_rebalance_waits_until_the_batch_being_published_is_committed() -> None:
    held = await publish_held([REDEMPTIONS])
    assert not held.rebalance.done(), "the partitions were revoked before the results went out"
    assert held.consumer.commits == []

    held.release.set()
    await within_deadline(held.rebalance)
    await within_deadline(held.consuming)
    assert held.consumer.commits == [{CREDITS: 1}]
    assert held.consumer.owned == {REDEMPTIONS}


@pytest.mark.parametrize("stopping", [False, True])
async def test_a_publish_that_fails_while_a_rebalance_waits_is_raised_by_run(
    stopping: bool,
) -> None:
    held = await publish_held([CREDITS], fails=True)
    if stopping:  # the loop would end without another batch: the failure is raised all the same
        held.stop.set()
    held.release.set()
    await within_deadline(held.rebalance)  # the listener does not fail: aiokafka would only log

    with pytest.raises(RuntimeError, match="the producer is gone"):
        await within_deadline(held.consuming)
    assert held.consumer.commits == []


async def test_coin_results_wait_for_those_an_earlier_assignment_queued() -> None:
    consumer = FakeConsumer()
    for value in (b"a", b"b", b"c"):
        consumer.append(CREDITS, value)
    consumer.max_per_fetch = 1
    still_queued = [True, False]  # the relay publishes the queued ones meanwhile
    asked: list[bool] = []

    async def coin_results_queued() -> bool:
        asked.append(still_queued.pop(0))
        return asked[-1]

    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        until=lambda: len(consumer.commits) == 3,
        coin_results_queued=coin_results_queued,
    )
    await owning(consumer, CREDITS)
    await within_deadline(loop.run(stop))

    # Queued while the outbox held coin results; from memory after; asked only until then.
    assert applier.queued_all == [True, False, False]
    assert asked == [True, False]


async def test_a_stop_cut_short_while_a_rebalance_waits_for_a_publish_ends_both() -> None:
    held = await publish_held([CREDITS])  # the publish never ends: the broker is away
    loop_task = held.consuming
    loop_task.cancel()  # WORKER_SHUTDOWN_GRACE_SECONDS ran out
    with pytest.raises(asyncio.CancelledError):
        await within_deadline(loop_task)
    await within_deadline(held.rebalance)  # the listener returns: the consumer can leave
    assert held.consumer.commits == []


async def test_the_outbox_check_waits_out_a_database_outage() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    answers: list[bool | Exception] = [ConnectionRefusedError("the database is away"), False]

    async def coin_results_queued() -> bool:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, coin_results_queued=coin_results_queued)
    await owning(consumer, CREDITS)

    await within_deadline(loop.run(stop))
    assert applier.queued_all == [False]
    assert answers == []


class LaneApplier(Applier):
    """An Applier that holds every batch of partition `held` until `release` is set."""

    def __init__(self, held: int = 0) -> None:
        super().__init__()
        self.held = held
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(
        self, records: Sequence[InboundRecord], queue_all: bool
    ) -> list[OutgoingMessage]:
        if any(r.partition == self.held for r in records):
            self.holding.set()
            await self.release.wait()
        return await super().__call__(records, queue_all)


async def test_each_lane_applies_its_own_partitions_and_one_held_does_not_hold_another() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"lane 0")
    consumer.append(REDEMPTIONS, b"lane 0 too")
    consumer.append(MORE_CREDITS, b"lane 1")
    applier, stop = LaneApplier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, until=lambda: len(applier.batches) == 2, lanes=2)
    await owning(consumer, CREDITS, MORE_CREDITS, REDEMPTIONS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(applier.holding.wait())

    # Partition 1's lane applies, publishes and commits while partition 0's batch is held.
    await until(lambda: bool(consumer.commits))
    assert applier.batches == [[(MORE_CREDITS.topic, 1, 0)]]
    assert consumer.commits == [{MORE_CREDITS: 1}]

    applier.release.set()
    await within_deadline(consuming)
    # One student's coin topics share a partition number, so a lane and a batch.
    assert applier.batches[1] == [(CREDITS.topic, 0, 0), (REDEMPTIONS.topic, 0, 0)]
    assert consumer.committed_offsets == {MORE_CREDITS: 1, CREDITS: 1, REDEMPTIONS: 1}


@pytest.mark.parametrize("held", [0, 1])
@pytest.mark.parametrize("stage", ["applied", "published"])
async def test_a_rebalance_waits_for_the_batch_in_hand_of_every_lane(stage: str, held: int) -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"partition 0")
    consumer.append(MORE_CREDITS, b"partition 1")
    publisher: Publisher | None = None
    if stage == "applied":
        applier = LaneApplier(held)
        holding, release = applier.holding, applier.release
    else:
        applier, publisher = Applier(), HoldingPublisher(consumer, b"partition %d" % held)
        holding, release = publisher.publishing, publisher.release
    stop = asyncio.Event()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        publish=publisher,
        until=lambda: len(consumer.commits) == 2,
        lanes=2,
    )
    await owning(consumer, CREDITS, MORE_CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(holding.wait())

    rebalance = asyncio.create_task(consumer.rebalance([REDEMPTIONS]))
    for _ in range(50):
        await asyncio.sleep(0.001)
    assert not rebalance.done(), f"revoked with a lane's batch being {stage}, not committed"
    assert consumer.owned == {CREDITS, MORE_CREDITS}

    release.set()
    await within_deadline(rebalance)
    await within_deadline(consuming)
    assert consumer.committed_offsets == {CREDITS: 1, MORE_CREDITS: 1}
    assert consumer.owned == {REDEMPTIONS}


async def test_a_batch_taken_before_a_rebalance_is_read_again_not_applied_after_it() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, until=lambda: len(applier.batches) == 1, lanes=2)
    await owning(consumer, CREDITS)
    async with loop.guard._lock:  # a rebalance's revoke is under way: every lane waits
        consuming = asyncio.create_task(loop.run(stop))
        await until(lambda: consumer.positions[CREDITS] == 1)  # the lane took the record
        loop.guard.generation += 1
        consumer.positions[CREDITS] = 0  # as aiokafka: the new assignment starts at the commit

    await within_deadline(consuming)
    assert applier.batches == [[(CREDITS.topic, 0, 0)]]  # once, after the rebalance
    assert consumer.commits == [{CREDITS: 1}]


class ReturnsAfterARebalance(FakeConsumer):
    """As aiokafka's `getmany`: a call in flight when a rebalance begins waits for the new
    assignment, then returns records read from its positions (the committed offsets)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.armed and CREDITS in partitions:
            self.armed = False
            self.entered.set()
            await self.release.wait()  # the rebalance happens meanwhile
        return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)


async def test_records_a_fetch_returns_from_the_new_assignment_are_applied() -> None:
    consumer = ReturnsAfterARebalance()
    consumer.append(CREDITS, b"a0")
    consumer.append(CREDITS, b"a1")
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(
        consumer, applier, stop, until=lambda: (CREDITS.topic, 0, 2) in applier.applied, lanes=2
    )
    await owning(consumer, CREDITS, MORE_CREDITS)
    consumer.armed = True
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(consumer.entered.wait())  # lane 0's fetch is in flight
    await consumer.rebalance([CREDITS, MORE_CREDITS])  # positions back to the committed offsets
    consumer.release.set()  # the fetch returns a0 and a1, read from the new assignment
    for _ in range(20):
        await asyncio.sleep(0.001)
    consumer.append(CREDITS, b"a2")

    await within_deadline(consuming)
    assert [offset for _, _, offset in applier.applied] == [0, 1, 2]
    assert consumer.committed_offsets == {CREDITS: 3}


async def test_a_lane_queueing_in_the_outbox_keeps_queueing_whatever_another_lane_found() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a student's first")
    outbox = ["coins.expired, queued by an earlier assignment"]
    applied: list[tuple[int, bool]] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def queued() -> bool:
        return bool(outbox)

    class Queueing(Applier):
        """Queued results become visible in the outbox when the batch's transaction ends."""

        async def __call__(
            self, records: Sequence[InboundRecord], queue_all: bool
        ) -> list[OutgoingMessage]:
            applied.append((records[0].partition, queue_all))
            if records[0].partition == 0 and not holding.is_set():
                holding.set()
                await release.wait()  # in its transaction
            out = await super().__call__(records, queue_all)
            if queue_all:
                outbox.extend(f"{r.partition}@{r.offset}" for r in records)
                return []
            return out

    applier, stop = Queueing(), asyncio.Event()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        until=lambda: len(applier.batches) == 3,
        coin_results_queued=queued,
        lanes=2,
    )
    await owning(consumer, CREDITS, MORE_CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(holding.wait())  # lane 0 queues its batch, not yet committed
    outbox.pop(0)  # the relay published the earlier one
    consumer.append(MORE_CREDITS, b"another student")  # lane 1 finds the outbox empty
    await until(lambda: len(applied) == 2)
    release.set()  # lane 0's results now wait in the outbox
    await until(lambda: consumer.committed_offsets.get(CREDITS) == 1)
    consumer.append(CREDITS, b"the same student's second")

    await within_deadline(consuming)
    assert applied == [(0, True), (1, False), (0, True)]  # behind its first, queued too


async def test_a_lane_that_owns_no_partition_still_fetches() -> None:
    # aiokafka takes a member none of whose tasks fetched for `max_poll_interval_ms` for a
    # stalled one, which leaves the group and does not come back.
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, until=lambda: False, lanes=2)
    await owning(consumer, CREDITS)  # partition 0 only: lane 1 has none

    def idle() -> list[tuple[TopicPartition, ...]]:
        return [f for f in consumer.fetches if f and not set(f) & consumer.owned]

    consuming = asyncio.create_task(loop.run(stop))
    await until(lambda: bool(idle()) and bool(consumer.commits))
    stop.set()
    await within_deadline(consuming)
    assert idle(), "the lane without partitions stopped fetching"
    assert applier.applied == [(CREDITS.topic, 0, 0)]
    assert consumer.commits == [{CREDITS: 1}]


async def test_an_unreadable_record_rewinds_only_its_own_lane() -> None:
    consumer = FakeConsumer()
    consumer.append(MORE_CREDITS, b"lane 1")
    dead: list[int] = []

    async def dead_letter(topic: str, partition: int, offset: int, error: BaseException) -> None:
        dead.append(offset)

    publisher = HoldingPublisher(consumer, b"lane 1")  # applied, not yet committed
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        publish=publisher,
        dead_letter=dead_letter,
        until=lambda: consumer.committed_offsets.get(MORE_CREDITS) == 1 and bool(dead),
        lanes=2,
    )
    await owning(consumer, CREDITS, MORE_CREDITS)
    consuming = asyncio.create_task(loop.run(stop))
    await within_deadline(publisher.publishing.wait())
    consumer.append_unreadable(CREDITS)  # lane 0 meets it while lane 1's batch is in hand
    await until(lambda: bool(dead))
    publisher.release.set()

    await within_deadline(consuming)
    assert dead == [0]
    assert applier.applied == [(MORE_CREDITS.topic, 1, 0)]  # once: lane 1 was not rewound


async def test_a_batch_taken_between_a_revocation_and_the_assignment_goes_through_the_outbox() -> (
    None
):
    # aiokafka may hand over records of the new assignment before `on_partitions_assigned`
    # runs: until it has, whether they may go out from memory is not known.
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop)
    await owning(consumer, CREDITS)
    await loop.guard.on_partitions_revoked({CREDITS})

    await within_deadline(loop.run(stop))
    assert applier.queued_all == [True]

    await loop.guard.on_partitions_assigned({CREDITS})
    consumer.append(CREDITS, b"b")
    stop.clear()
    await within_deadline(loop.run(stop))
    assert applier.queued_all == [True, False]


class RebalancesWhileSteppingPast(FakeConsumer):
    """Once the unreadable record is dead-lettered, the next one-record fetch waits out a
    rebalance that keeps the partition, then reads from the new positions, as aiokafka's."""

    def __init__(self) -> None:
        super().__init__()
        self.dead = False

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        if self.dead and max_records == 1:
            self.dead = False
            await self.rebalance(set(self.owned))
        return await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)


async def test_records_read_past_an_unreadable_one_across_a_rebalance_are_applied() -> None:
    consumer = RebalancesWhileSteppingPast()
    consumer.append_unreadable(CREDITS)
    consumer.append(CREDITS, b"a")
    consumer.append(CREDITS, b"b")

    async def dead_letter(topic: str, partition: int, offset: int, error: BaseException) -> None:
        consumer.dead = True

    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(
        consumer,
        applier,
        stop,
        dead_letter=dead_letter,
        until=lambda: consumer.committed_offsets.get(CREDITS) == 3,
    )
    await owning(consumer, CREDITS)

    await within_deadline(loop.run(stop))
    assert sorted(offset for _, _, offset in applier.applied) == [1, 2]


@pytest.mark.parametrize("lanes", [1, 2])
async def test_every_assignment_checks_the_outbox_again(lanes: int) -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    outbox: list[str] = []

    async def queued() -> bool:
        return bool(outbox)

    applier, stop = Applier(), asyncio.Event()
    loop = consume_loop(consumer, applier, stop, coin_results_queued=queued, lanes=lanes)
    await owning(consumer, CREDITS)
    await within_deadline(loop.run(stop))
    assert applier.queued_all == [False]

    outbox.append("coins.credited, queued by another member while it was unaligned")
    await owning(consumer, CREDITS)
    consumer.append(CREDITS, b"b")
    stop.clear()
    await within_deadline(loop.run(stop))
    assert applier.queued_all == [False, True]


ALIGNED = (CREDITS, MORE_CREDITS, REDEMPTIONS, TopicPartition(REDEMPTIONS.topic, 1))


async def started(consumer: FakeConsumer) -> None:
    """Wait until the loop's lanes fetch: `run` is under way (a step before that takes none)."""
    await until(lambda: bool(consumer.fetches))


async def aligned_owner(consumer: FakeConsumer) -> FakeConsumer:
    consumer.partitions_of = {topic: 2 for topic in TOPICS}
    return await owning(consumer, *ALIGNED)


async def running_aligned(
    consumer: FakeConsumer, applier: Applier, stop: asyncio.Event, **options: Any
) -> tuple[ConsumeLoop, asyncio.Task[None]]:
    """A loop over the coin topics that runs until `stop`, its member the aligned owner of
    them, once `run` is under way."""
    loop = consume_loop(
        consumer, applier, stop, until=lambda: False, ordered_together=TOPICS, **options
    )
    await aligned_owner(consumer)
    running = asyncio.create_task(loop.run(stop))
    await started(consumer)
    return loop, running


async def after_the_last_owners_turn(
    consumer: FakeConsumer, publisher: HoldingPublisher, credit: bytes
) -> None:
    """The partitions go to another member and come back: meanwhile the last owner was sent
    `credit` on partition 0 and three redemptions on partition 1 (r0, r1, r2), which are
    fetched first. Returns once the batch holding r0 is being published: `publisher` is a
    `HoldingPublisher(consumer, b"r0")`, which holds it."""
    await consumer.rebalance([])  # the last owner's turn
    for n in range(3):
        consumer.append(TopicPartition(REDEMPTIONS.topic, 1), b"r%d" % n)
    consumer.append(CREDITS, credit)
    await consumer.rebalance(ALIGNED)
    await within_deadline(publisher.publishing.wait())


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_step_between_batches_follows_the_lanes_results_and_its_next_batch_follows_it(
    lanes: int,
) -> None:
    # An expiry runs in the lane that owns its partitions, once the lane's results before are
    # published, and what it queued goes out before the lane's next results.
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    consumer.append(MORE_CREDITS, b"m")
    outbox: list[str] = []

    async def queued() -> bool:
        return bool(outbox)

    applier, stop = Applier(), asyncio.Event()
    publisher = HoldingPublisher(consumer, b"b")
    loop, consuming = await running_aligned(
        consumer, applier, stop, publish=publisher, coin_results_queued=queued, lanes=lanes
    )
    await until(lambda: consumer.committed_offsets.get(MORE_CREDITS) == 1)
    await until(lambda: consumer.committed_offsets.get(CREDITS) == 1)
    steps: list[tuple[list[int], list[bytes | None]]] = []

    async def expire(numbers: frozenset[int]) -> int:
        published = [value for batch in publisher.batches for value in batch]
        steps.append((sorted(numbers), published))
        outbox.append("coins.expired")
        return 1

    assert await within_deadline(loop.between_batches(expire)) == lanes  # caught up
    outbox.clear()  # the relay published them
    steps.clear()
    consumer.append(CREDITS, b"b")
    await within_deadline(publisher.publishing.wait())
    between = asyncio.create_task(loop.between_batches(expire))
    for _ in range(20):  # let it try to go ahead, were it able to
        await asyncio.sleep(0)
    assert steps == []  # partition 0's newest results are not published yet

    publisher.release.set()
    assert await within_deadline(between) == lanes
    assert [numbers for numbers, _ in steps] == ([[0], [1]] if lanes == 2 else [[0, 1]])
    assert b"b" in steps[0][1]  # published before the step that expires partition 0's lots

    consumer.append(CREDITS, b"after")
    await until(lambda: (CREDITS.topic, 0, 2) in applier.applied)
    assert applier.queued_all[-1] is True  # behind the expiry, through the outbox
    assert applier.queued_all[-2] is False  # b, decided before the expiry: from memory
    stop.set()
    await within_deadline(consuming)


@pytest.mark.parametrize("step", ["fails after its commit", "did nothing"])
async def test_the_next_batch_checks_the_outbox_after_a_step_that_may_have_queued(
    step: str,
) -> None:
    # A commit whose answer was lost raises, yet may have queued an expiry: the next batch
    # looks. A step that expired nothing leaves it publishing from memory, whatever another
    # lane has queued meanwhile.
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    outbox: list[str] = []

    async def queued() -> bool:
        return bool(outbox)

    applier, stop = Applier(), asyncio.Event()
    loop, consuming = await running_aligned(consumer, applier, stop, coin_results_queued=queued)
    await until(lambda: len(consumer.commits) == 1)

    async def fails_after_commit(_: frozenset[int]) -> int:
        outbox.append("coins.expired")
        raise ConnectionResetError("the answer to COMMIT was lost")

    async def nothing_due(_: frozenset[int]) -> int:
        outbox.append("coins.credited, queued by another lane")
        return 0

    if step == "did nothing":
        assert await within_deadline(loop.between_batches(nothing_due)) == 0
    else:
        with pytest.raises(ConnectionResetError):
            await within_deadline(loop.between_batches(fails_after_commit))
    consumer.append(CREDITS, b"b")
    await until(lambda: len(applier.queued_all) == 2)
    assert applier.queued_all == [False, step != "did nothing"]
    stop.set()
    await within_deadline(consuming)


async def test_no_step_runs_in_a_lane_whose_batch_failed_or_that_owns_no_coin_input() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")

    async def fails(_: int) -> None:
        raise RuntimeError("the broker refused it")

    stop = asyncio.Event()
    loop = consume_loop(
        consumer, Applier(), stop, publish=Publisher(consumer, fails), ordered_together=TOPICS
    )
    await aligned_owner(consumer)
    with pytest.raises(RuntimeError, match="refused"):
        await within_deadline(loop.run(stop))
    steps: list[frozenset[int]] = []

    async def step(numbers: frozenset[int]) -> int:
        steps.append(numbers)
        return 1

    # Its results were never published: the worker restarts and publishes them again first.
    assert await within_deadline(loop.between_batches(step)) == 0
    # A member that owns none of the coin inputs expires no lot.
    elsewhere, stop_elsewhere = FakeConsumer(), asyncio.Event()
    other = consume_loop(
        elsewhere, Applier(), stop_elsewhere, until=lambda: False, ordered_together=("x",)
    )
    await owning(elsewhere, CREDITS)
    running = asyncio.create_task(other.run(stop_elsewhere))
    await started(elsewhere)
    assert await within_deadline(other.between_batches(step)) == 0
    assert steps == []
    stop_elsewhere.set()
    await within_deadline(running)


async def record_steps(
    loop: ConsumeLoop, applier: Applier, steps: list[tuple[list[int], list[Applied]]]
) -> int:
    """Run a step between batches that notes its partition numbers and what was applied."""

    async def step(numbers: frozenset[int]) -> int:
        steps.append((sorted(numbers), list(applier.applied)))
        return 1

    return await within_deadline(loop.between_batches(step))


@pytest.mark.parametrize("why", ["revoked", "coordinator lost", "unaligned"])
async def test_no_step_while_the_member_may_not_own_its_partitions_alone(why: str) -> None:
    # Revoked: the partitions may go to another member, which checks the outbox before a step
    # here would commit (aiokafka's assignment() still lists them until the next one). A lost
    # coordinator: the group may have moved on without this member. Unaligned: another member
    # owns the same number of another coin topic.
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    applier, stop = Applier(), asyncio.Event()
    loop, running = await running_aligned(consumer, applier, stop)
    await until(lambda: len(consumer.commits) == 1)
    steps: list[tuple[list[int], list[Applied]]] = []
    assert consumer.listener is not None
    if why == "revoked":
        await consumer.listener.on_partitions_revoked(set(consumer.owned))
    elif why == "coordinator lost":
        consumer._coordinator.coordinator_id = None
    else:
        await consumer.rebalance([CREDITS, MORE_CREDITS, REDEMPTIONS])  # not redemptions-1

    assert await record_steps(loop, applier, steps) == 0
    consumer._coordinator.coordinator_id = 1
    await consumer.rebalance(ALIGNED)
    assert await record_steps(loop, applier, steps) == 1
    assert [numbers for numbers, _ in steps] == [[0, 1]]
    stop.set()
    await within_deadline(running)


async def test_no_step_once_run_ended_with_a_batch_applied_and_not_published() -> None:
    consumer = FakeConsumer()

    async def lane_0_fails(batch: int) -> None:
        if batch >= 1:
            raise RuntimeError("lane 0 cannot apply its batch")

    applier, stop = Applier(lane_0_fails), asyncio.Event()
    publisher = HoldingPublisher(consumer, b"m")
    loop, running = await running_aligned(consumer, applier, stop, publish=publisher, lanes=2)
    steps: list[tuple[list[int], list[Applied]]] = []
    assert await record_steps(loop, applier, steps) == 2  # the logs were empty: caught up

    consumer.append(MORE_CREDITS, b"m")
    await within_deadline(publisher.publishing.wait())  # lane 1's batch: applied, held
    consumer.append(CREDITS, b"a")
    with pytest.raises(RuntimeError, match="lane 0"):
        await within_deadline(running)
    assert publisher.batches == []  # cut short: replayed by the next owner, which goes first
    assert await record_steps(loop, applier, steps) == 0
    assert len(steps) == 2


async def test_no_step_for_a_partition_until_what_its_last_owner_may_have_applied_is_replayed() -> (
    None
):
    # The last owner applied CREDITS@0 in the database and died before publishing it: only
    # its replay here publishes that result, and no expiry of partition 0 may go out first.
    # This member owned the partitions before, and looked then (their logs were empty).
    consumer = FakeConsumer()
    consumer.max_per_fetch = 1
    applier, stop = Applier(), asyncio.Event()
    publisher = HoldingPublisher(consumer, b"r0")
    loop, running = await running_aligned(consumer, applier, stop, publish=publisher)
    steps: list[tuple[list[int], list[Applied]]] = []
    assert await record_steps(loop, applier, steps) == 1

    await after_the_last_owners_turn(
        consumer, publisher, b"applied by the last owner, never published"
    )
    between = asyncio.create_task(record_steps(loop, applier, steps))
    publisher.release.set()
    assert await between == 0  # partition 0 and partition 1 are both behind their log ends
    assert len(steps) == 1

    await until(lambda: len(consumer.commits) == 4)
    assert await record_steps(loop, applier, steps) == 1
    numbers, applied = steps[-1]
    assert numbers == [0, 1]
    assert (CREDITS.topic, 0, 0) in applied
    stop.set()
    await within_deadline(running)


@pytest.mark.parametrize("end", ["stop", "another lane fails"])
async def test_run_returns_only_after_a_step_under_way_and_starts_none_once_ending(
    end: str,
) -> None:
    # The partitions are free for their next owner when `run` returns: a step must be done.
    consumer = FakeConsumer()

    async def lane_1_fails(_: int) -> None:
        raise RuntimeError("lane 1 cannot apply its batch")

    applier, stop = Applier(lane_1_fails), asyncio.Event()
    loop, consuming = await running_aligned(consumer, applier, stop, lanes=2)
    stepping, release = asyncio.Event(), asyncio.Event()

    async def slow_step(_: frozenset[int]) -> int:
        stepping.set()
        await release.wait()
        return 1

    between = asyncio.create_task(loop.between_batches(slow_step))
    await within_deadline(stepping.wait())  # lane 0's
    if end == "stop":
        stop.set()
    else:
        consumer.append(MORE_CREDITS, b"m")
        await until(lambda: len(applier.queued_all) == 1)  # lane 1 met its batch
    await asyncio.sleep(0.05)  # let run go as far as it can (the fake's fetches wait 5 ms)
    assert not consuming.done()

    release.set()
    await within_deadline(asyncio.wait({consuming}))
    assert await within_deadline(between) == 1  # lane 1 took none: the loop was ending
    steps: list[tuple[list[int], list[Applied]]] = []
    assert await record_steps(loop, applier, steps) == 0


async def test_a_step_waiting_for_its_lane_takes_none_if_a_rebalance_began_meanwhile() -> None:
    consumer = FakeConsumer()
    consumer.append(CREDITS, b"a")
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_second(batch: int) -> None:
        if batch == 1:
            holding.set()
            await release.wait()

    applier, stop = Applier(hold_the_second), asyncio.Event()
    loop, running = await running_aligned(consumer, applier, stop)
    await until(lambda: len(consumer.commits) == 1)
    steps: list[tuple[list[int], list[Applied]]] = []
    assert await record_steps(loop, applier, steps) == 1  # caught up: the horizon is known

    consumer.append(CREDITS, b"b")
    await within_deadline(holding.wait())  # the lane holds its lock while b is applied
    between = asyncio.create_task(record_steps(loop, applier, steps))
    for _ in range(5):
        await asyncio.sleep(0)  # it waits for the lane's lock
    rebalancing = asyncio.create_task(consumer.rebalance(ALIGNED))
    for _ in range(5):
        await asyncio.sleep(0)  # the revocation began, and waits for the lane too
    release.set()
    assert await between == 0
    await within_deadline(rebalancing)
    assert len(steps) == 1
    stop.set()
    await within_deadline(running)


class LanesOfWhichOneIsAskedInVain(FakeConsumer):
    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[Any, int]:
        partitions = list(partitions)
        if any(tp.partition == 0 for tp in partitions):
            raise KafkaTimeoutError("no leader for partition 0 yet")
        return await super().end_offsets(partitions)


async def test_a_lane_the_broker_cannot_tell_about_leaves_the_others_stepping() -> None:
    consumer = LanesOfWhichOneIsAskedInVain()
    applier, stop = Applier(), asyncio.Event()
    loop, running = await running_aligned(consumer, applier, stop, lanes=2)
    steps: list[tuple[list[int], list[Applied]]] = []
    assert await record_steps(loop, applier, steps) == 1
    assert [numbers for numbers, _ in steps] == [[1]]
    stop.set()
    await within_deadline(running)


class AnswersLate(FakeConsumer):
    """Answers `end_offsets` as of the call, but only once `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.asked, self.answer = asyncio.Event(), asyncio.Event()

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[Any, int]:
        ends = await super().end_offsets(partitions)
        self.asked.set()
        await self.answer.wait()
        return ends


async def test_log_ends_asked_for_an_assignment_that_ended_meanwhile_are_not_kept() -> None:
    consumer = AnswersLate()
    consumer.max_per_fetch = 1
    applier, stop = Applier(), asyncio.Event()
    publisher = HoldingPublisher(consumer, b"r0")
    loop, running = await running_aligned(consumer, applier, stop, publish=publisher)
    steps: list[tuple[list[int], list[Applied]]] = []
    between = asyncio.create_task(record_steps(loop, applier, steps))
    await within_deadline(consumer.asked.wait())  # the logs are empty as it asks

    await after_the_last_owners_turn(consumer, publisher, b"b")  # it applied b and died
    consumer.answer.set()  # ends of 0, from the assignment before
    assert await within_deadline(between) == 0
    # The next look asks again: r1, r2 and b, which the last owner may have applied, first.
    again = asyncio.create_task(record_steps(loop, applier, steps))
    for _ in range(5):
        await asyncio.sleep(0)
    publisher.release.set()
    assert await within_deadline(again) == 0
    assert steps == []
    stop.set()
    await within_deadline(running)
