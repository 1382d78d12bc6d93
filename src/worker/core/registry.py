"""The registry of event types: the one place where each consumed and published event lives.

Each consumed event type is one row: its type (which is also its topic, CONTRACT section 2),
the model of its `data`, the handler that turns it into a command, what that command asks for
(a ledger type, or the payment state machine's verb) and the result events it may cause. Each
published event type is one entry: its type (= topic) and the model of its `data`.

Everything else derives from these two tables: the topics the worker subscribes to and creates
(`worker.core.topics`), decoding and dispatch (`worker.core.commands`), the JSON Schemas and the
AsyncAPI document (`worker.schemas`), and the benchmark's workload. Adding an event type means
one handler in `worker.core.handlers`, one row here, and its tests.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from worker.core.envelope import Envelope
from worker.core.events import (
    CatalogItemUpserted,
    CoinsAdjustmentRequested,
    CoinsRedemptionRequested,
    CourseCompleted,
    InboundData,
    PaymentRefundRequested,
    PaymentRequested,
    PaymentWebhookReceived,
    ReferralSucceeded,
)
from worker.core.handlers import (
    Command,
    Policies,
    adjust_coins,
    open_payment,
    receive_webhook,
    redeem_coins,
    refund_payment,
    reward_course_completion,
    reward_referral,
    upsert_catalog_item,
)
from worker.core.results import (
    CatalogItemRejected,
    CatalogItemUpdated,
    CoinsExpired,
    CoinsMoved,
    CoinsRejected,
    OutboundData,
    PaymentCancelled,
    PaymentConfirmed,
    PaymentExpired,
    PaymentFailed,
    PaymentRefunded,
    PaymentRejected,
    PaymentSessionCreated,
)

D = TypeVar("D", bound=InboundData)


@dataclass(frozen=True)
class InputEvent(Generic[D]):
    """A consumed event type. The type checker holds `data` and `handler` to the same model."""

    type: str  # the CloudEvents `type`, equal to the topic it is consumed from
    data: builtins.type[D]  # the model of its `data`
    handler: Callable[[Envelope, D, Policies], Command]
    # What the command asks for: the ledger type it writes, or the payment verb it applies.
    effect: str
    # The result event types it may cause (a redelivery repeats one of these).
    results: tuple[str, ...]


# What a coin command answers with: a credit or debit (by the amount's sign), or a refusal.
_COIN_RESULTS = ("coins.credited", "coins.debited", "coins.rejected")

INPUT_EVENTS: tuple[InputEvent[Any], ...] = (
    InputEvent(
        "course.completed",
        CourseCompleted,
        reward_course_completion,
        effect="course_completion",
        results=("coins.credited", "coins.rejected"),
    ),
    InputEvent(
        "referral.succeeded",
        ReferralSucceeded,
        reward_referral,
        effect="referral",
        results=("coins.credited", "coins.rejected"),
    ),
    InputEvent(
        "coins.adjustment.requested",
        CoinsAdjustmentRequested,
        adjust_coins,
        effect="manual_adjustment",
        results=_COIN_RESULTS,
    ),
    InputEvent(
        "coins.redemption.requested",
        CoinsRedemptionRequested,
        redeem_coins,
        effect="redemption",
        results=("coins.debited", "coins.rejected"),
    ),
    InputEvent(
        "catalog.item.upserted",
        CatalogItemUpserted,
        upsert_catalog_item,
        effect="upsert a catalog item",
        results=("catalog.item.updated", "catalog.item.rejected"),
    ),
    InputEvent(
        "payment.requested",
        PaymentRequested,
        open_payment,
        effect="open a payment",
        # The session, the provider's refusal (failed) or a conflict (rejected); a replay of a
        # payment that moved on before its session opened repeats the status it reached.
        results=(
            "payment.session.created",
            "payment.failed",
            "payment.rejected",
            "payment.confirmed",
            "payment.cancelled",
            "payment.expired",
            "payment.refunded",
        ),
    ),
    InputEvent(
        "payment.webhook.received",
        PaymentWebhookReceived,
        receive_webhook,
        effect="report a provider's status",
        results=(
            "payment.confirmed",
            "payment.failed",
            "payment.cancelled",
            "payment.expired",
            "payment.rejected",
        ),
    ),
    InputEvent(
        "payment.refund.requested",
        PaymentRefundRequested,
        refund_payment,
        effect="refund a payment",
        results=("payment.refunded", "payment.rejected"),
    ),
)

# Every published event type (= its topic) and the model of its `data`.
RESULT_EVENTS: Mapping[str, type[OutboundData]] = {
    "coins.credited": CoinsMoved,
    "coins.debited": CoinsMoved,
    "coins.rejected": CoinsRejected,
    "coins.expired": CoinsExpired,
    "catalog.item.updated": CatalogItemUpdated,
    "catalog.item.rejected": CatalogItemRejected,
    "payment.session.created": PaymentSessionCreated,
    "payment.confirmed": PaymentConfirmed,
    "payment.failed": PaymentFailed,
    "payment.cancelled": PaymentCancelled,
    "payment.expired": PaymentExpired,
    "payment.refunded": PaymentRefunded,
    "payment.rejected": PaymentRejected,
}

# Published by a sweep, for what fell due, in answer to no event (CONTRACT section 10).
SWEPT_RESULTS: tuple[str, ...] = ("coins.expired",)

BY_TYPE: Mapping[str, InputEvent[Any]] = {event.type: event for event in INPUT_EVENTS}
INPUT_TYPES: tuple[str, ...] = tuple(BY_TYPE)
RESULT_TYPES: tuple[str, ...] = tuple(RESULT_EVENTS)
