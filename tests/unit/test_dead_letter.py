"""A dead-lettered record keeps its bytes, key and headers, and says where and why."""

from __future__ import annotations

from datetime import UTC, datetime

from worker.core.records import InboundRecord, dead_letter
from worker.core.topics import DLQ_TOPIC


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
