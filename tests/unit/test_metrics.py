"""The event-age histogram, observed a batch at a time, reads as prometheus_client's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from worker.metrics import BatchHistogram, Metrics, new_registry

BUCKETS = (0.01, 0.025, 0.5, 1, 60)
# Below the first bound, on bounds, between them, above the last, and zero.
VALUES = (0.0, 0.001, 0.01, 0.0100001, 0.025, 0.3, 1.0, 59.99, 60.0, 61.0, 1e9)


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_a_batch_reads_as_the_same_values_observed_one_by_one() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("age_seconds", "Age.", BUCKETS, ours)
    single = Histogram("age_seconds", "Age.", buckets=BUCKETS, registry=theirs)
    assert _exposition(ours) == _exposition(theirs)  # nothing observed yet
    batch.observe_many(VALUES[:4])
    batch.observe_many([])
    batch.observe_many(VALUES[4:])
    for value in VALUES:
        single.observe(value)
    # The same lines; the sum added up in another order, so equal to the last bits.
    assert [line for line in _exposition(ours) if "_sum" not in line] == [
        line for line in _exposition(theirs) if "_sum" not in line
    ]
    assert ours.get_sample_value("age_seconds_sum") == pytest.approx(sum(VALUES), rel=1e-12)
    assert ours.get_sample_value("age_seconds_bucket", {"le": "0.01"}) == 3
    assert ours.get_sample_value("age_seconds_bucket", {"le": "+Inf"}) == len(VALUES)


@pytest.mark.parametrize("registry", [new_registry, CollectorRegistry])
def test_the_event_age_can_be_asked_for_by_name(
    registry: Callable[[], CollectorRegistry],
) -> None:
    metrics = Metrics(registry())
    metrics.event_age.observe_many([0.02, 0.2])
    restricted = metrics.registry.restricted_registry(["payment_worker_event_age_seconds_count"])
    assert generate_latest(restricted).decode().splitlines()[-1] == (
        "payment_worker_event_age_seconds_count 2.0"
    )


def test_its_names_are_its_own_in_a_registry() -> None:
    registry = CollectorRegistry()
    BatchHistogram("age_seconds", "Age.", BUCKETS, registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram("age_seconds", "Age.", buckets=BUCKETS, registry=registry)


@pytest.mark.parametrize("buckets", [(1, 0.5), (0.5, 0.5), (0.5, float("inf")), ()])
def test_buckets_must_rise_and_be_finite(buckets: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="buckets"):
        BatchHistogram("age_seconds", "Age.", buckets, CollectorRegistry())
