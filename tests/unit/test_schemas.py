"""`schemas/` is what the models generate, valid, in step with pydantic, and its refs resolve."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from worker import cli, schemas
from worker.core.coins import CoinCommand, Wallet, decide_coins
from worker.core.gateway import RefundReceipt, Refused, Session
from worker.core.payments import (
    Known,
    OpenPayment,
    PaymentDefaults,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
    decide_payments,
    expire_payments,
    settle_refund,
    settle_session,
)
from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS
from worker.core.webhooks import Notification

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
REGENERATE = "run `.venv/bin/payment-worker schemas` to regenerate schemas/"
# Every topic of CONTRACT sections 2 and 4 has a schema.
INBOUND_TYPES = INPUT_TOPICS
OUTBOUND_TYPES = OUTPUT_TOPICS
DATA_FILES = [f"{t}.json" for t in (*INBOUND_TYPES, *OUTBOUND_TYPES)]
MAX = 2**53 - 1
LONG_ID = "x" * 129


def load(name: str) -> Any:
    return json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))


def test_committed_files_are_what_the_models_generate() -> None:
    expected = schemas.render()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS_DIR.glob("*.json")}
    assert sorted(on_disk) == sorted(expected), f"schemas/ holds other files: {REGENERATE}"
    for name, text in expected.items():
        assert on_disk[name] == text, f"schemas/{name} is out of date: {REGENERATE}"


def test_schemas_command_needs_no_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_TOPIC_PARTITIONS", "not a number")  # load_settings would refuse
    assert cli.main(["schemas", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(schemas.render())
    assert {p: Path(p).read_text(encoding="utf-8") for p in printed} == {
        str(tmp_path / "out" / name): text for name, text in schemas.render().items()
    }


@pytest.mark.parametrize("name", DATA_FILES)
def test_every_data_schema_is_a_valid_draft_2020_12_schema(name: str) -> None:
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:payment-worker:schema:{name.removesuffix('.json')}"
    assert schema["title"] == name.removesuffix(".json")
    assert schema["description"]


def valid(kind: str) -> dict[str, Any]:
    return {
        "course.completed": {
            "student_id": "stu-1",
            "course_id": "course-101",
            "completed_at": "2026-11-26T09:00:00Z",
            "course_tier": "advanced",
        },
        "referral.succeeded": {
            "referral_id": "ref-1",
            "referrer_id": "stu-1",
            "referred_student_id": "stu-2",
        },
        "coins.adjustment.requested": {
            "adjustment_id": "adj-1",
            "student_id": "stu-1",
            "amount": -40,
            "reason": "goodwill correction",
            "actor": {"id": "staff-7", "role": "admin"},
        },
        "coins.redemption.requested": {
            "redemption_id": "red-1",
            "student_id": "stu-1",
            "amount": 30,
            "item": "sticker-pack",
        },
        "payment.requested": {
            "payment_id": "pay-1",
            "student_id": "stu-1",
            "course_id": "course-101",
            "amount": 49900,
            "currency": "INR",
            "description": "Python 101",
        },
        "payment.webhook.received": {
            "provider": "stripe",
            "headers": {"Stripe-Signature": "t=1,v1=00"},
            "body": '{"id": "evt_1"}',
        },
        "payment.refund.requested": {
            "refund_id": "rf-1",
            "payment_id": "pay-1",
            "reason": "duplicate purchase",
            "actor": {"id": "staff-7", "role": "admin"},
        },
        "catalog.item.upserted": {
            "item_id": "voucher-10",
            "version": 1,
            "title": "10% off any course",
            "cost_coins": 500,
            "stock": 100,
            "active_from": "2026-11-26T00:00:00Z",
            "active_until": "2026-12-31T00:00:00Z",
            "per_student_limit": 2,
            "actor": {"id": "staff-7", "role": "admin"},
        },
    }[kind]


def variant(kind: str, **changes: Any) -> dict[str, Any]:
    """The valid example with fields changed; a change to `...` removes the field."""
    data = valid(kind)
    for name, value in changes.items():
        if value is ...:
            del data[name]
        else:
            data[name] = value
    return data


EXAMPLES: list[tuple[str, dict[str, Any], bool]] = [
    *((kind, valid(kind), True) for kind in INBOUND_TYPES),
    ("course.completed", variant("course.completed", course_tier=...), True),
    ("course.completed", variant("course.completed", course_tier=None), True),
    ("course.completed", variant("course.completed", unknown_field="ignored"), True),
    ("course.completed", variant("course.completed", student_id="x" * 128), True),
    ("course.completed", variant("course.completed", student_id=LONG_ID), False),
    ("course.completed", variant("course.completed", course_id=""), False),
    ("course.completed", variant("course.completed", course_id=...), False),
    ("course.completed", variant("course.completed", completed_at=...), False),
    ("referral.succeeded", variant("referral.succeeded", reward_coins=75), True),
    ("referral.succeeded", variant("referral.succeeded", reward_coins=MAX), True),
    ("referral.succeeded", variant("referral.succeeded", reward_coins="75"), False),
    ("referral.succeeded", variant("referral.succeeded", reward_coins=0), False),
    ("referral.succeeded", variant("referral.succeeded", reward_coins=2**53), False),
    ("referral.succeeded", variant("referral.succeeded", referral_id=LONG_ID), False),
    ("referral.succeeded", variant("referral.succeeded", referrer_id=...), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount=-MAX), True),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount="-40"), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount=0), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount=2**53), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount=-(2**53)), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", amount=True), False),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", actor=...), False),
    (
        "coins.adjustment.requested",
        variant("coins.adjustment.requested", actor={"id": "staff-7"}),
        False,
    ),
    (
        "coins.adjustment.requested",
        variant("coins.adjustment.requested", actor={"id": LONG_ID, "role": "admin"}),
        False,
    ),
    ("coins.adjustment.requested", variant("coins.adjustment.requested", adjustment_id=1), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount=MAX), True),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount="30"), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount=0), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount=-30), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount=2**53), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", item=...), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", item=None), False),
    ("coins.redemption.requested", variant("coins.redemption.requested", amount=...), False),
    (
        "coins.redemption.requested",
        variant("coins.redemption.requested", amount=..., item=..., item_id="voucher-10"),
        True,
    ),
    (
        "coins.redemption.requested",
        variant("coins.redemption.requested", item=..., item_id="voucher-10"),
        True,
    ),
    (
        "coins.redemption.requested",
        variant("coins.redemption.requested", amount=..., item_id=None),
        False,
    ),
    (
        "coins.redemption.requested",
        variant("coins.redemption.requested", amount=..., item=..., item_id=LONG_ID),
        False,
    ),
    ("catalog.item.upserted", variant("catalog.item.upserted", stock=None), True),
    ("catalog.item.upserted", variant("catalog.item.upserted", stock=...), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", stock=-1), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", active_until=...), True),
    ("catalog.item.upserted", variant("catalog.item.upserted", per_student_limit=...), True),
    ("catalog.item.upserted", variant("catalog.item.upserted", per_student_limit=0), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", version=0), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", cost_coins=0), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", cost_coins=2**53), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", active_from=...), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", actor=...), False),
    ("catalog.item.upserted", variant("catalog.item.upserted", item_id=""), False),
    (
        "coins.redemption.requested",
        variant("coins.redemption.requested", student_id=LONG_ID),
        False,
    ),
    ("payment.requested", variant("payment.requested", description=...), True),
    ("payment.requested", variant("payment.requested", currency="inr"), True),
    ("payment.requested", variant("payment.requested", currency="RUPEE"), False),
    ("payment.requested", variant("payment.requested", currency=...), False),
    ("payment.requested", variant("payment.requested", amount=0), False),
    ("payment.requested", variant("payment.requested", amount=499.5), False),
    ("payment.requested", variant("payment.requested", amount=2**53), False),
    ("payment.requested", variant("payment.requested", course_id=LONG_ID), False),
    ("payment.webhook.received", variant("payment.webhook.received", provider="paypal"), False),
    ("payment.webhook.received", variant("payment.webhook.received", headers=...), False),
    ("payment.webhook.received", variant("payment.webhook.received", headers={"a": 1}), False),
    ("payment.webhook.received", variant("payment.webhook.received", body={"id": 1}), False),
    ("payment.refund.requested", variant("payment.refund.requested", actor=...), False),
    ("payment.refund.requested", variant("payment.refund.requested", refund_id=""), False),
]


@pytest.mark.parametrize(("kind", "data", "accepted"), EXAMPLES)
def test_schema_and_model_agree_on_examples(
    kind: str, data: dict[str, Any], accepted: bool
) -> None:
    errors = list(Draft202012Validator(load(f"{kind}.json")).iter_errors(data))
    assert (not errors) == accepted, [e.message for e in errors]
    try:
        schemas.INBOUND[kind].model_validate(data)
    except ValidationError:
        assert not accepted, "the model refuses what the schema accepts"
    else:
        assert accepted, "the model accepts what the schema refuses"


def test_published_results_match_their_schemas() -> None:
    commands = [
        CoinCommand(
            "stu-1", "course_completion", "course-101", 100, None, "e-1", "course.completed"
        ),
        CoinCommand("stu-1", "redemption", "red-1", -30, 30, "e-2", "coins.redemption.requested"),
        CoinCommand("stu-1", "redemption", "red-2", -500, 500, "e-3", "coins.redemption.requested"),
    ]
    plan = decide_coins(commands, {}, {"stu-1": Wallet()}, datetime(2026, 11, 26, 9, tzinfo=UTC))
    assert [m.topic for m in plan.messages] == ["coins.credited", "coins.debited", "coins.rejected"]
    for message in plan.messages:
        assert message.value is not None
        event = json.loads(message.value)
        Draft202012Validator(load(f"{message.topic}.json")).validate(event["data"])


def test_published_payment_results_match_their_schemas() -> None:
    now = datetime(2026, 11, 26, 9, tzinfo=UTC)
    defaults = PaymentDefaults("mock", timedelta(minutes=30))

    def opened(pid: str) -> OpenPayment:
        return OpenPayment(
            pid, "stu-1", "course-101", 49900, "INR", None, f"e-{pid}", "payment.requested", "t"
        )

    def reported(status: str, ppid: str) -> ReportStatus:
        return ReportStatus(
            "mock",
            Notification(ppid, status, 49900, "INR"),
            "e-w",
            "payment.webhook.received",
            ppid,
            "t",
        )  # type: ignore[arg-type]

    requested = decide_payments([opened(pid) for pid in "abcde"], Known(), defaults, now)
    sessions = [
        settle_session(payment, Session(f"mock_{pid}", f"https://pay.test/{pid}", now), now)
        for pid, payment in requested.created.items()
    ]
    refused = settle_session(requested.created["e"], Refused("no such currency"), now)
    payments = {pid: plan.changed[pid] for pid, plan in zip("abcde", sessions, strict=True)}
    commands = [
        reported("succeeded", "mock_a"),
        reported("failed", "mock_b"),
        reported("cancelled", "mock_c"),
        RefundPayment(
            "rf-1",
            "a",
            "duplicate",
            "staff-7",
            True,
            "e-rf",
            "payment.refund.requested",
            "stu-1",
            "t",
        ),
        RefuseWebhook(
            "mock", "invalid_signature", "", "e-bad", "payment.webhook.received", "mock_x", "t"
        ),
    ]
    plan = decide_payments(commands, Known(payments=payments), defaults, now)
    refunded = settle_refund(
        plan.changed["a"], "rf-1", plan.refunds["rf-1"], RefundReceipt("re_1"), now
    )
    rejected = settle_refund(
        plan.changed["a"], "rf-1", plan.refunds["rf-1"], Refused("already refunded"), now
    )
    expired = expire_payments([payments["d"]], now)
    messages = [
        *(m for s in sessions for m in s.messages),
        *refused.messages,
        *plan.messages,
        *refunded.messages,
        *rejected.messages,
        *expired.messages,
    ]
    assert {m.topic for m in messages} == {t for t in OUTBOUND_TYPES if t.startswith("payment.")}
    for message in messages:
        assert message.value is not None
        event = json.loads(message.value)
        Draft202012Validator(load(f"{message.topic}.json")).validate(event["data"])


def test_asyncapi_has_a_channel_and_operation_per_topic() -> None:
    doc = load(schemas.ASYNCAPI_FILE)
    assert doc["asyncapi"] == "3.0.0"
    assert set(doc["channels"]) == {*INBOUND_TYPES, *OUTBOUND_TYPES, DLQ_TOPIC}
    for topic, channel in doc["channels"].items():
        assert channel["address"] == topic
    actions = {
        op["channel"]["$ref"].removeprefix("#/channels/"): op["action"]
        for op in doc["operations"].values()
    }
    assert actions == {
        **dict.fromkeys(INBOUND_TYPES, "receive"),
        **dict.fromkeys((*OUTBOUND_TYPES, DLQ_TOPIC), "send"),
    }
    for kind in (*INBOUND_TYPES, *OUTBOUND_TYPES):
        message = doc["components"]["messages"][kind]
        assert message["payload"]["properties"]["data"] == {"$ref": f"./{kind}.json"}
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    dlq_headers = doc["components"]["messages"]["dead-letter"]["headers"]["required"]
    assert {h for h in dlq_headers if h.startswith("dlq.")} == {
        "dlq.error.class",
        "dlq.error.message",
        "dlq.source.topic",
        "dlq.source.partition",
        "dlq.source.offset",
        "dlq.failed.at",
    }


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_every_asyncapi_ref_resolves() -> None:
    doc = load(schemas.ASYNCAPI_FILE)
    found = refs(doc)
    assert len([r for r in found if not r.startswith("#")]) == len(DATA_FILES)
    for ref in found:
        if ref.startswith("#/"):
            node = doc
            for part in ref.removeprefix("#/").split("/"):
                assert part in node, f"{ref} does not resolve"
                node = node[part]
        else:
            assert ref.startswith("./"), ref
            assert (SCHEMAS_DIR / ref).is_file(), f"{ref} names no file in schemas/"
