"""Decoding CloudEvents at the edge: structured and binary mode, and every kind of bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from worker.core.envelope import BadInputError, decode

DATA = {"student_id": "s-1", "course_id": "c-1", "completed_at": "2026-11-26T09:00:00Z"}


def structured(**overrides: Any) -> bytes:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "type": "course.completed",
        "source": "courses",
        "time": "2026-11-26T09:00:00Z",
        "subject": "s-1",
        "datacontenttype": "application/json",
        "data": DATA,
    }
    event.update(overrides)
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


BINARY_HEADERS = (
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-2"),
    ("ce_type", b"course.completed"),
    ("ce_source", b"courses"),
    ("ce_time", b"2026-11-26T09:00:00Z"),
    ("ce_subject", b"s-1"),
    ("content-type", b"application/json"),
)


def test_structured_mode_gives_attributes_and_data() -> None:
    envelope = decode(structured(), (), "course.completed")
    assert (envelope.id, envelope.type, envelope.source, envelope.subject) == (
        "e-1",
        "course.completed",
        "courses",
        "s-1",
    )
    assert envelope.data == DATA


def test_binary_mode_takes_attributes_from_ce_headers() -> None:
    envelope = decode(json.dumps(DATA).encode(), BINARY_HEADERS, "course.completed")
    assert (envelope.id, envelope.subject, envelope.datacontenttype) == (
        "e-2",
        "s-1",
        "application/json",
    )
    assert envelope.data == DATA


@pytest.mark.parametrize(
    ("value", "headers", "complaint"),
    [
        (b"\xff\xfe not utf-8", (), "not UTF-8 JSON"),
        (b"{not json", (), "not UTF-8 JSON"),
        (b'{"specversion": "1.0", "x": NaN}', (), "not UTF-8 JSON"),
        (None, (), "empty"),
        (b"[1, 2]", (), "JSON object"),
        (structured(data=None), (), "no data"),
        (structured(specversion="0.3"), (), "specversion"),
        (structured(id=None), (), "id"),
        (structured(id="x" * 129), (), "id"),
        (structured(source=None), (), "source"),
        (structured(source=""), (), "source"),
        (structured(subject=None), (), "subject"),
        (structured(time=None), (), "time"),
        (structured(datacontenttype="text/plain"), (), "datacontenttype"),
        (structured(time="yesterday"), (), "time"),
        (structured(type="referral.succeeded"), (), "does not match its topic"),
        (json.dumps(DATA).encode(), (("ce_specversion", b"1.0"),), "invalid envelope"),
        (b"{}", (*BINARY_HEADERS[:1], ("ce_id", b"\xff")), "not UTF-8"),
        # A repeated member name, at any depth: parsers disagree about which copy wins.
        (structured()[:-1] + b', "subject": "s-2"}', (), "'subject' is repeated"),
        (
            structured().replace(b'"course_id"', b'"student_id": "x", "course_id"'),
            (),
            "'student_id' is repeated",
        ),
        (b'{"data": [{"a": 1, "a": 1}]}', (), "'a' is repeated"),
        (b"{}", (*BINARY_HEADERS, ("ce_subject", b"s-2")), "ce_subject is given more than once"),
        (b"{}", (*BINARY_HEADERS, ("Content-Type", b"application/json")), "more than once"),
        # Control characters in ids and attributes.
        (structured(id="e\x1f1"), (), "id"),
        (structured(source="courses\n"), (), "source"),
        (structured(subject="s\x7f1"), (), "subject"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    value: bytes | None, headers: tuple[tuple[str, bytes], ...], complaint: str
) -> None:
    with pytest.raises(BadInputError, match=complaint):
        decode(value, headers, "course.completed")


def test_received_at_is_the_brokers_append_time_whatever_the_event_says() -> None:
    forged = {"_appended_at": "2030-01-01T00:00:00Z", "appended_at": "2030-01-01T00:00:00Z"}
    appended = datetime(2026, 11, 26, 9, 5, tzinfo=UTC)
    # Structured mode and binary mode, the event claiming another append time in its body or
    # in a header: the broker's time counts where the topic records it, the event's otherwise.
    for value, headers in (
        (structured(**forged), ()),
        (json.dumps(DATA).encode(), (*BINARY_HEADERS, ("ce__appended_at", b"2030-01-01"))),
    ):
        assert decode(value, headers, "course.completed", appended).received_at == appended
        own = decode(value, headers, "course.completed")
        assert own.received_at == own.time == datetime(2026, 11, 26, 9, tzinfo=UTC)
