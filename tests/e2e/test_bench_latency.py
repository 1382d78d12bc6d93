"""The bench's latency report: each event's result record, the warm-up's taken first.

No service is needed; it sits beside the bench's smoke test because the bench's own
dependencies are installed for the main run's tiers only (the unit tier also runs on other
Pythons without them)."""

from __future__ import annotations

import pytest
from bench.run import latency_report
from bench.workload import Event


def event(result_id: str, *, duplicate: bool = False) -> Event:
    return Event("course.completed", b"s1", b"{}", result_id, duplicate)


def report(
    measured: list[tuple[Event, float]], appended: dict[str, list[float]], warm_up: list[Event]
) -> dict[str, float]:
    events, due = [e for e, _ in measured], [sent for _, sent in measured]
    [point] = latency_report(
        [(1.0, events, due, [0.0] * len(events))], appended, lambda e: e.result_id, warm_up
    )
    return point


def test_a_measured_duplicate_of_a_warm_up_event_gets_its_own_record() -> None:
    # The original, in the warm-up, was answered at 10 s; its duplicate, sent at 20 s, at 20.5 s.
    point = report([(event("r1", duplicate=True), 20.0)], {"r1": [10.0, 20.5]}, [event("r1")])
    assert point["p50_ms"] == pytest.approx(500.0)


def test_a_duplicate_within_the_measured_events_takes_the_next_record() -> None:
    point = report(
        [(event("r1"), 1.0), (event("r1", duplicate=True), 2.0)], {"r1": [1.25, 2.5]}, []
    )
    assert point["mean_ms"] == pytest.approx((250.0 + 500.0) / 2)


def test_an_event_left_without_a_record_of_its_own_fails_the_report() -> None:
    # Two events of one result id, one record: the duplicate was never answered.
    with pytest.raises(RuntimeError, match="fewer records than events"):
        report([(event("r1"), 1.0), (event("r1", duplicate=True), 2.0)], {"r1": [1.25]}, [])
