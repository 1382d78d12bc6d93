"""A dead-lettered record keeps its bytes, key and headers, says where and why, and fits.

(The fit is measured with aiokafka's own estimate, the one its producer checks.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from hypothesis import given
from hypothesis import strategies as st

from worker.core.messages import Headers
from worker.core.records import InboundRecord, dead_letter, unreadable_record
from worker.core.topics import DLQ_TOPIC
from worker.db.outbox import decode_headers, encode_headers

FAILED_AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_record_goes_whole_with_contract_headers() -> None:
    record = InboundRecord(
        topic="course.completed",
        partition=3,
        offset=41,
        key=b"\xffstudent",
        value=b"\x00not json\xfe",
        headers=(("ce_id", b"e-1"), ("trace", b"\x01")),
    )
    failed_at = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

    message = dead_letter(record, ValueError("bad\nthing"), failed_at)

    assert message.topic == DLQ_TOPIC
    assert (message.key, message.value) == (record.key, record.value)
    assert message.headers[:2] == record.headers
    assert dict(message.headers[2:]) == {
        "dlq.error.class": b"ValueError",
        "dlq.error.message": b"bad thing",
        "dlq.source.topic": b"course.completed",
        "dlq.source.partition": b"3",
        "dlq.source.offset": b"41",
        "dlq.failed.at": b"2026-11-26T09:00:00+00:00",
    }


def record(value: bytes | None, key: bytes | None = b"k", headers: Headers = ()) -> InboundRecord:
    return InboundRecord("course.completed", 0, 7, key, value, headers)


def test_input_headers_named_dlq_are_dropped_so_only_the_workers_say_why() -> None:
    forged = (("DLQ.error.class", b"Forged"), ("dlq.source.offset", b"1"), ("trace", b"t"))
    message = dead_letter(record(b"x", headers=forged), ValueError("bad"), FAILED_AT)
    names = [name for name, _ in message.headers]
    assert names[0] == "trace"
    assert names.count("dlq.source.offset") == 1
    assert dict(message.headers)["dlq.error.class"] == b"ValueError"
    assert "DLQ.error.class" not in names


@given(
    key=st.binary(max_size=2_000),
    value=st.binary(max_size=20_000),
    headers=st.lists(st.tuples(st.text(max_size=20), st.binary(max_size=3_000)), max_size=5),
    limit=st.integers(2_000, 30_000),
)
def test_a_copy_always_fits_and_keeps_what_it_can(
    key: bytes, value: bytes, headers: list[tuple[str, bytes]], limit: int
) -> None:
    source = record(value, key, tuple(headers))
    message = dead_letter(source, ValueError("x" * 2_000), FAILED_AT, max_bytes=limit)
    # What the producer itself measures before it refuses a message as too large.
    measured = DefaultRecordBatchBuilder.estimate_size_in_bytes(
        message.key, message.value, list(message.headers)
    )
    assert measured <= message.wire_size() <= limit
    found = dict(message.headers)
    if "dlq.truncated" not in found:
        assert (message.key, message.value) == (key, value)
        return
    original = len(key) + len(value) + sum(len(n.encode()) + len(v) for n, v in headers)
    assert int(found["dlq.original.size"]) == original
    assert key.startswith(message.key or b"")
    assert value.startswith(message.value or b"")


def test_a_record_with_neither_key_nor_value_is_copied_with_an_empty_value() -> None:
    message = dead_letter(record(None, key=None), ValueError("empty"), FAILED_AT)
    assert (message.key, message.value) == (None, b"")


def test_an_unreadable_record_is_copied_as_its_coordinates() -> None:
    message = unreadable_record("course.completed", 2, 9, UnicodeDecodeError(
        "utf-8", b"\xff", 0, 1, "invalid start byte"), FAILED_AT)  # fmt: skip
    found = dict(message.headers)
    assert (found["dlq.source.partition"], found["dlq.source.offset"]) == (b"2", b"9")
    assert found["dlq.error.class"] == b"UnicodeDecodeError"
    assert found["dlq.truncated"] == b"true"


# Header names as aiokafka hands them over: valid text (it decodes them strictly), NUL included.
NAMES = st.text(st.characters(exclude_categories=("Cs",)))


@given(st.lists(st.tuples(NAMES, st.one_of(st.none(), st.binary())), max_size=6))
def test_headers_keep_every_name_and_value_in_storage(
    headers: list[tuple[str, bytes | None]],
) -> None:
    assert decode_headers(encode_headers(tuple(headers))) == tuple(headers)
