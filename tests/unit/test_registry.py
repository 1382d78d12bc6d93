"""The registry is the one place event types live: everything else must agree with it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.events import (
    STRUCTURED,
    adjustment,
    catalog_item,
    completed,
    mock_webhook,
    payment_request,
    redemption,
    referral,
    refund_request,
    structured,
)
from worker import schemas
from worker.core.coins import CoinCommand
from worker.core.commands import command_for
from worker.core.envelope import BadInputError
from worker.core.handlers import Policies, Rewards
from worker.core.payments import STATUS_EVENTS
from worker.core.registry import BY_TYPE, INPUT_EVENTS, RESULT_EVENTS, SWEPT_RESULTS
from worker.core.results import LedgerType
from worker.core.signatures import WebhookVerifier
from worker.core.topics import ALL_TOPICS, DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS

POLICIES = Policies(Rewards(100, 50, 1_000), WebhookVerifier({"mock": b"m"}))

# One valid event of every consumed type: (data, Kafka key = subject).
SAMPLES: dict[str, tuple[dict[str, Any], str]] = {
    "course.completed": (completed("stu-1", "c-1"), "stu-1"),
    "referral.succeeded": (referral("r-1", "stu-1"), "stu-1"),
    "coins.adjustment.requested": (adjustment("a-1", "stu-1", 5), "stu-1"),
    "coins.redemption.requested": (redemption("d-1", "stu-1", 5), "stu-1"),
    "payment.requested": (payment_request("p-1", "stu-1"), "stu-1"),
    "payment.webhook.received": (mock_webhook("mock_p-1", "succeeded", "m"), "mock_p-1"),
    "payment.refund.requested": (refund_request("rf-1", "p-1"), "stu-1"),
    "catalog.item.upserted": (catalog_item("voucher-1"), "voucher-1"),
}


def test_every_registered_type_has_a_sample_here() -> None:
    assert set(SAMPLES) == set(BY_TYPE)


@pytest.mark.parametrize("registered", INPUT_EVENTS, ids=lambda e: e.type)
def test_dispatch_runs_the_registered_handler_and_keeps_the_events_type(registered: Any) -> None:
    data, key = SAMPLES[registered.type]
    value = structured(registered.type, data, subject=key)
    command = command_for(registered.type, key.encode(), value, tuple(STRUCTURED), POLICIES)
    assert command.event_type == registered.type
    if isinstance(command, CoinCommand):
        ledger_type: LedgerType = command.ledger_type
        assert ledger_type == registered.effect  # the row's effect is the ledger type written


def test_each_coin_event_type_writes_its_own_ledger_type() -> None:
    coin_rows = [e for e in INPUT_EVENTS if e.type.startswith(("course.", "referral.", "coins."))]
    assert len({e.effect for e in coin_rows}) == len(coin_rows) == 4


def test_results_a_row_names_are_published_types_and_every_published_type_has_a_cause() -> None:
    caused = {result for event in INPUT_EVENTS for result in event.results}
    assert caused <= set(RESULT_EVENTS)
    # Nothing is published that no row says it causes, but for what the sweeps find due.
    assert set(RESULT_EVENTS) == caused | set(SWEPT_RESULTS)
    assert not caused & set(SWEPT_RESULTS)
    assert set(STATUS_EVENTS.values()) <= set(RESULT_EVENTS)


def test_topics_schemas_and_the_asyncapi_document_derive_from_the_registry() -> None:
    assert tuple(e.type for e in INPUT_EVENTS) == INPUT_TOPICS
    assert tuple(RESULT_EVENTS) == OUTPUT_TOPICS
    assert set(ALL_TOPICS) == {*INPUT_TOPICS, *OUTPUT_TOPICS, DLQ_TOPIC}
    assert {e.type: e.data for e in INPUT_EVENTS} == schemas.INBOUND
    assert dict(RESULT_EVENTS) == schemas.OUTBOUND
    channels = schemas.asyncapi()["channels"]
    assert set(channels) == set(ALL_TOPICS)
    for event in INPUT_EVENTS:
        for result in event.results:
            assert f"`{result}`" in channels[event.type]["description"]


def test_an_unregistered_type_is_bad_input_not_a_crash() -> None:
    with pytest.raises(BadInputError, match="no handler for event type"):
        command_for("coins.gifted", b"s", structured("coins.gifted", {}), (), POLICIES)
