"""Topic names: what the worker consumes, publishes and dead-letters.

Each event's `type` equals its topic (CONTRACT section 2), so the topics are the registry's
event types; only the dead-letter topic is not an event type.
"""

from __future__ import annotations

from worker.core.registry import INPUT_EVENTS, INPUT_TYPES, RESULT_TYPES

INPUT_TOPICS: tuple[str, ...] = INPUT_TYPES
OUTPUT_TOPICS: tuple[str, ...] = RESULT_TYPES
# The inputs answered by coin results, which the consume loop publishes from memory: a member
# that owns partition p of one of them must own partition p of all, or one student's results
# could leave two members out of order (`worker.messaging.consume.aligned`).
COIN_INPUT_TOPICS: tuple[str, ...] = tuple(
    row.type for row in INPUT_EVENTS if all(r.startswith("coins.") for r in row.results)
)

# Section 6.
DLQ_TOPIC = "payment-worker.dlq"

ALL_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, *OUTPUT_TOPICS, DLQ_TOPIC)


def with_prefix(prefix: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Topic names as deployed: `KAFKA_TOPIC_PREFIX` lets environments share one cluster."""
    return tuple(prefix + name for name in names)


def event_type(prefix: str, topic: str) -> str:
    """The event type a deployed topic carries (the inverse of `with_prefix`)."""
    return topic.removeprefix(prefix)
