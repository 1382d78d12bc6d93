"""The pure side of `payment-worker dlq` and `status`: a dead letter read back, the choice of
letters, the replay plan, what reaches the terminal, and the status screen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from worker.cli import main
from worker.core.dead_letters import (
    Coordinates,
    DeadLetter,
    Replay,
    Selection,
    Skipped,
    details,
    failure_order,
    line,
    parse_coordinates,
    plan,
    printable,
    read,
)
from worker.core.records import InboundRecord, dead_letter
from worker.db.outbox import Backlog
from worker.messaging.group import GroupView, Member, Position
from worker.settings import Settings
from worker.status import Status, render

FAILED_AT = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
INPUTS = {"course.completed": 3, "referral.succeeded": 3, "payment.webhook.received": 3}


def letter_of(
    record: InboundRecord, error: Exception, at: int = 0, max_bytes: int = 1_048_576
) -> DeadLetter:
    """What `dlq` reads back of the dead letter the worker writes for `record`."""
    message = dead_letter(record, error, FAILED_AT, max_bytes)
    return read(
        Coordinates("payment-worker.dlq", 0, at), message.key, message.value, message.headers
    )


def record(
    offset: int = 41, key: bytes | None = b"stu-1", value: bytes = b'{"a":1}'
) -> InboundRecord:
    return InboundRecord("course.completed", 2, offset, key, value, (("ce_id", b"e-1"),))


class CheckViolationError(Exception):
    pass


def test_a_dead_letter_reads_back_as_the_record_and_why_it_failed() -> None:
    found = letter_of(record(), CheckViolationError("new row violates\ncheck"))

    assert found.source == Coordinates("course.completed", 2, 41)
    assert (found.key, found.value, found.headers) == (b"stu-1", b'{"a":1}', (("ce_id", b"e-1"),))
    assert (found.error_class, found.error_message) == (
        "CheckViolationError",
        "new row violates check",
    )
    assert (found.failed_at, found.truncated, found.original_size) == (FAILED_AT, False, None)


def test_a_truncated_copy_says_so_and_is_never_replayed() -> None:
    big = record(value=b"x" * 5000)
    found = letter_of(big, ValueError("too big"), max_bytes=2000)

    assert found.truncated
    assert found.original_size is not None
    assert found.original_size > 5000
    [step] = plan([found], INPUTS)
    assert isinstance(step, Skipped)
    assert "truncated" in step.reason


def test_headers_the_worker_did_not_write_leave_the_letter_unplaceable() -> None:
    found = read(
        Coordinates("payment-worker.dlq", 1, 7), b"k", b"v", (("dlq.source.offset", b"x"),)
    )

    assert (found.source, found.error_class, found.failed_at) == (None, "?", None)
    assert found.headers == ()
    [step] = plan([found], INPUTS)
    assert isinstance(step, Skipped)


def test_replays_go_to_their_source_partition_once_in_source_order() -> None:
    later = letter_of(record(offset=42), ValueError("b"), at=0)  # failed first, read first
    first = letter_of(record(), ValueError("a"), at=1)
    again = letter_of(record(), ValueError("a"), at=2)  # written twice around a crash
    results = read(
        Coordinates("payment-worker.dlq", 0, 3),
        b"k",
        b"v",
        dead_letter(
            InboundRecord("coins.credited", 0, 5, b"k", b"v", ()), ValueError("c"), FAILED_AT
        ).headers,
    )

    steps = list(plan([later, results, again, first], INPUTS))

    # Each source partition by offset (41 before 42), whatever the order of failing or reading;
    # of two copies of one record, the first written; partitions merged by failure time.
    assert steps[0] == Replay(first, "course.completed", 2, b"stu-1", b'{"a":1}', first.headers)
    assert isinstance(steps[1], Skipped)
    assert steps[1].letter is again
    assert "another copy" in steps[1].reason
    assert isinstance(steps[2], Replay)
    assert steps[2].letter is later
    assert isinstance(steps[3], Skipped)
    assert "coins.credited is not an input topic" in steps[3].reason


def test_a_credit_is_replayed_before_the_redemption_that_failed_after_it() -> None:
    """Topics sort `coins.redemption...` before `course.completed`: across topics the order is
    when each failed (found by review), within a partition its offsets."""
    credit = InboundRecord("course.completed", 3, 10, b"ana", b"{}", ())
    spend = InboundRecord("coins.redemption.requested", 3, 4, b"ana", b"{}", ())
    later_credit = InboundRecord("course.completed", 3, 11, b"ana", b"{}", ())
    inputs = {"course.completed": 6, "coins.redemption.requested": 6}

    def failed(record: InboundRecord, at: Coordinates, seconds: int) -> DeadLetter:
        when = FAILED_AT + timedelta(seconds=seconds)
        return read(at, None, None, dead_letter(record, ValueError(), when).headers)

    letters = [
        failed(spend, Coordinates("dlq", 1, 9), 1),
        failed(later_credit, Coordinates("dlq", 0, 5), 2),
        failed(credit, Coordinates("dlq", 0, 2), 0),
    ]

    steps = list(plan(letters, inputs))

    assert [str(step.letter.source) for step in steps] == [
        "course.completed:3:10",
        "coins.redemption.requested:3:4",
        "course.completed:3:11",
    ]


def test_letters_left_to_their_owner_or_of_a_partition_gone_are_skipped() -> None:
    webhook = InboundRecord("payment.webhook.received", 0, 1, b"pp-1", b"{}", ())
    gone = InboundRecord("referral.succeeded", 7, 1, b"k", b"{}", ())
    letters = [letter_of(webhook, ValueError("x")), letter_of(gone, ValueError("y"), at=1)]

    steps = list(plan(letters, INPUTS, {"payment.webhook.received": "ask the provider"}))

    assert [(type(s), s.reason) for s in steps if isinstance(s, Skipped)] == [
        (Skipped, "ask the provider"),
        (Skipped, "referral.succeeded has no partition 7 now"),
    ]


def test_letters_failed_at_one_time_are_ordered_by_where_they_sit() -> None:
    """A batch's bad input shares one failure time (found by review: the sort compared
    coordinates, which had no order, and every command crashed)."""
    letters = [letter_of(record(offset=n), ValueError("x"), at=9 - n) for n in range(3)]
    unplaced = read(Coordinates("payment-worker.dlq", 0, 20), None, b"", ())

    ordered = sorted([*letters, unplaced, unplaced], key=failure_order)

    assert [letter.at.offset for letter in ordered] == [7, 8, 9, 20, 20]


def test_a_selection_chooses_by_class_topic_time_and_source() -> None:
    letter = letter_of(record(), CheckViolationError("x"))

    assert Selection().chooses(letter)
    assert Selection(error_classes=frozenset({"CheckViolationError"})).chooses(letter)
    assert not Selection(error_classes=frozenset({"BadInputError"})).chooses(letter)
    assert Selection(topics=frozenset({"course.completed"})).chooses(letter)
    assert not Selection(topics=frozenset({"referral.succeeded"})).chooses(letter)
    assert Selection(since=FAILED_AT).chooses(letter)  # at or after
    assert not Selection(until=FAILED_AT).chooses(letter)  # before
    assert Selection(until=FAILED_AT + timedelta(microseconds=1)).chooses(letter)
    assert not Selection(since=FAILED_AT + timedelta(microseconds=1)).chooses(letter)
    assert Selection(sources=frozenset({Coordinates("course.completed", 2, 41)})).chooses(letter)
    assert not Selection(sources=frozenset({Coordinates("course.completed", 2, 40)})).chooses(
        letter
    )
    unplaceable = read(Coordinates("payment-worker.dlq", 0, 0), None, b"", ())
    assert not Selection(since=FAILED_AT).chooses(unplaceable)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("course.completed:0:41", Coordinates("course.completed", 0, 41)),
        ("t1.course_completed-x:12:0", Coordinates("t1.course_completed-x", 12, 0)),
    ],
)
def test_coordinates_parse(text: str, expected: Coordinates) -> None:
    assert parse_coordinates(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize("text", ["", "a:b:c", "a:1", "a:-1:2", "a b:1:2", "a:1:2:3", ":1:2"])
def test_bad_coordinates_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="TOPIC:PARTITION:OFFSET"):
        parse_coordinates(text)


@given(st.binary(max_size=64), st.text(max_size=64))
def test_nothing_a_record_holds_reaches_the_terminal_as_a_control_character(
    key: bytes, message: str
) -> None:
    letter = letter_of(InboundRecord("course.completed", 0, 1, key, key, ()), ValueError(message))

    shown = line(letter)
    assert "\n" not in shown
    assert all(c == "\t" or c.isprintable() for c in shown)
    for row in details(letter):
        assert all(c == "\t" or c.isprintable() for c in row)


def test_an_escape_sequence_is_shown_not_obeyed() -> None:
    assert printable(b"\x1b[2Jhi\xff") == "\\x1b[2Jhi\\xff"
    assert printable("a\nb\tc") == "a\\nb\\tc"
    assert printable("a\nb\tc\r", lines=True) == "a\nb\tc\\r"
    assert printable(None) == "-"


def test_a_letter_is_listed_in_one_line_and_shown_whole() -> None:
    letter = letter_of(record(), CheckViolationError("violates"))

    assert line(letter) == (
        "course.completed:2:41\tkey=stu-1\t2026-11-28T09:00:00+00:00\tCheckViolationError: violates"
    )
    assert details(letter) == [
        "source      course.completed:2:41",
        "dead letter payment-worker.dlq:0:0",
        "failed at   2026-11-28T09:00:00+00:00",
        "error       CheckViolationError: violates",
        "truncated   no",
        "key         stu-1",
        "header      ce_id=e-1",
        "value       7 bytes",
        '{"a":1}',
    ]


def test_bad_arguments_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (
        ["dlq", "show", "nonsense"],
        ["dlq", "list", "--since", "2026-11-28T10:00"],
        ["dlq", "replay", "--until", "yesterday"],
        ["dlq", "frobnicate"],
    ):
        with pytest.raises(SystemExit) as exit_:
            main(args)
        assert exit_.value.code == 2
        [said] = capsys.readouterr().err.splitlines()
        assert said.startswith("payment-worker dlq"), said
        assert said.endswith("--help)"), said


def test_a_topic_that_is_not_an_input_is_refused_before_any_connection(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["dlq", "list", "--topic", "coins.credited"]) == 2
    assert capsys.readouterr().err == (
        "payment-worker dlq list: coins.credited is not an input topic (e.g. course.completed)\n"
    )
    assert (
        main(["dlq", "replay", "--since", "2026-11-28T10:00Z", "--until", "2026-11-28T09:00Z"]) == 2
    )
    assert "--since must be before --until" in capsys.readouterr().err


def settings() -> Settings:
    return Settings.model_validate(
        {"database_url": "postgresql://x@127.0.0.1/x", "kafka_topic_prefix": "p."}
    )


def test_the_status_screen_groups_partitions_and_sums_lag() -> None:
    a, b = "p.course.completed", "p.referral.succeeded"
    tp = TopicPartition
    view = GroupView(
        group="payment-worker",
        state="Stable",
        members=(
            Member("m-1", "payment-worker", "/10.0.0.1", (tp(a, 0), tp(a, 1), tp(b, 0), tp(b, 1))),
            Member("m-2", "payment-worker", "/10.0.0.2", (tp(a, 2), tp(a, 3))),
        ),
        positions={
            tp(a, 0): Position(0, 10, 10),
            tp(a, 1): Position(0, 10, 4),
            tp(a, 2): Position(5, 9, None),
            tp(a, 3): Position(0, 0, None),
            tp(b, 0): Position(0, 3, 1),
            tp(b, 1): Position(0, 0, 0),
            tp(b, 2): Position(0, 0, 0),
            tp(b, 3): Position(0, 0, 0),
            tp("p.payment-worker.dlq", 0): Position(2, 7, None),
        },
        missing_topics=("p.payment.requested",),
    )
    screen = render(Status(view, Backlog(4, 1, 12.25), ()), settings())

    assert screen == [
        "group payment-worker: Stable, 2 members",
        "  m-1  /10.0.0.1",
        "    partitions 0-1 of 2 topics (p.course.completed, p.referral.succeeded)",
        "  m-2  /10.0.0.2",
        "    partitions 2-3 of 1 topic (p.course.completed)",
        "  unassigned: p.referral.succeeded 2-3",
        "  topics not created yet: p.payment.requested",
        "lag: 12 messages behind the committed offsets",
        "  topic                 partitions  end offsets      lag  most behind",
        "  p.course.completed             4           29       10  p1: 6  (1 never committed)",
        "  p.referral.succeeded           4            3        2  p0: 2",
        "outbox: 4 queued, oldest 12.2 s; parked: 1  (payment-worker parked list)",
        "dead letters: 5 in p.payment-worker.dlq  (payment-worker dlq list)",
    ]


def test_the_status_screen_shows_what_answered_and_names_what_did_not() -> None:
    failed = ("kafka (k:9092) failed: no answer in 15 s",)
    screen = render(Status(None, Backlog(0, 0), failed), settings())

    assert screen == [
        "outbox: 0 queued, oldest 0.0 s; parked: 0",
        "error: kafka (k:9092) failed: no answer in 15 s",
    ]


def test_during_a_rebalance_no_partition_is_called_unassigned() -> None:
    a = "p.course.completed"
    view = GroupView(
        group="g",
        state="PreparingRebalance",
        members=(Member("m-1", "payment-worker", "/10.0.0.1", ()),),
        positions={
            TopicPartition(a, 0): Position(0, 5, 5),
            TopicPartition(a, 1): Position(0, 5, 5),
        },
        missing_topics=(),
    )

    screen = render(Status(view, Backlog(0, 0), ()), settings())

    assert screen[:3] == [
        "group g: PreparingRebalance, 1 member",
        "  m-1  /10.0.0.1",
        "  partitions: being assigned (a rebalance is going on)",
    ]
    assert not any("unassigned" in text for text in screen)


def test_records_deleted_before_the_group_read_them_are_said() -> None:
    behind = Position(start=100, end=150, committed=40)

    assert behind.lag == 50  # what is left to read
    assert behind.skipped_by_retention
    assert not Position(0, 10, 10).skipped_by_retention
    assert not Position(5, 10, None).skipped_by_retention
    view = GroupView("g", "Empty", (), {TopicPartition("p.course.completed", 0): behind}, ())
    [row] = [text for text in render(Status(view, None, ()), settings()) if "p0" in text]
    assert row.endswith("p0: 50  (1 deleted by retention before the group read them)")
