"""Topic names from the CONTRACT: what the worker consumes, publishes and dead-letters."""

from __future__ import annotations

# Section 2: each event's `type` equals its topic.
INPUT_TOPICS: tuple[str, ...] = (
    "course.completed",
    "referral.succeeded",
    "coins.adjustment.requested",
    "coins.redemption.requested",
    "payment.requested",
    "payment.webhook.received",
    "payment.refund.requested",
)

# Section 4.
OUTPUT_TOPICS: tuple[str, ...] = (
    "coins.credited",
    "coins.debited",
    "coins.rejected",
    "payment.session.created",
    "payment.confirmed",
    "payment.failed",
    "payment.cancelled",
    "payment.expired",
    "payment.refunded",
    "payment.rejected",
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
