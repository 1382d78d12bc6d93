"""Result events the worker publishes: outbound data models and their envelopes.

Outbound models forbid unknown fields. A result's id is a UUIDv5 of what it reports, so the
same outcome always carries the same id and consumers can drop repeats.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from worker.core import cloudevents
from worker.core.messages import OutgoingMessage
from worker.core.types import Id, NonNegativeAmount, PositiveAmount

SOURCE = "payment-worker"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:payment-worker:results")

LedgerType = Literal["course_completion", "referral", "manual_adjustment", "redemption"]
CoinRejection = Literal["insufficient_balance", "idempotency_conflict", "not_authorized"]


class OutboundData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CoinsMoved(OutboundData):
    """`data` of `coins.credited` and `coins.debited`; `amount` is always positive."""

    transaction_id: str
    student_id: Id
    type: LedgerType
    reference_id: Id
    amount: PositiveAmount
    balance_after: NonNegativeAmount
    source_event_id: Id


class CoinsRejected(OutboundData):
    """`data` of `coins.rejected`."""

    student_id: Id
    type: LedgerType
    reference_id: Id
    reason: CoinRejection
    balance: NonNegativeAmount
    source_event_id: Id


def derived_id(*parts: str) -> str:
    """A stable UUID for the parts; the separator keeps ("a", "bc") apart from ("ab", "c")."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def result_message(
    event_type: str, event_id: str, subject: str, data: OutboundData, time: datetime
) -> OutgoingMessage:
    """A structured-mode result event keyed by its subject (the student)."""
    value = cloudevents.structured(
        event_id=event_id,
        event_type=event_type,
        source=SOURCE,
        subject=subject,
        time=time,
        data=data.model_dump(mode="json"),
    )
    return OutgoingMessage(
        topic=event_type,
        key=subject.encode(),
        value=value,
        headers=tuple(cloudevents.structured_headers()),
    )


# The `data` model of every result event type the worker publishes (the topic is the type).
COIN_RESULTS: dict[str, type[OutboundData]] = {
    "coins.credited": CoinsMoved,
    "coins.debited": CoinsMoved,
    "coins.rejected": CoinsRejected,
}
