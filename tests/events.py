"""Building the events other services send, in structured or binary mode."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

from worker.core.signatures import stripe_signature

STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


TIME = "2026-11-26T09:00:00Z"
TIME_UNIX = 1795683600  # TIME in Unix seconds: when the ingress "received" a test webhook


def structured(
    kind: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    subject: str | None = None,
    at: str = TIME,
) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "type": kind,
            "source": "tests",
            "time": at,
            "subject": subject
            or data.get("student_id")
            or data.get("referrer_id")
            or data.get("item_id"),
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


def binary_headers(kind: str, subject: str, event_id: str | None = None) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_type", kind.encode()),
        ("ce_source", b"tests"),
        ("ce_time", TIME.encode()),
        ("ce_subject", subject.encode()),
        ("content-type", b"application/json"),
    ]


async def send(
    producer: AIOKafkaProducer,
    prefix: str,
    kind: str,
    data: dict[str, Any],
    *,
    key: str,
    event_id: str | None = None,
    binary: bool = False,
) -> RecordMetadata:
    """Send one event of `kind` to the worker's topic, keyed by `key`."""
    if binary:
        value, headers = json.dumps(data).encode(), binary_headers(kind, key, event_id)
    else:
        value, headers = structured(kind, data, event_id=event_id, subject=key), STRUCTURED
    return await producer.send_and_wait(prefix + kind, value, key=key.encode(), headers=headers)


def completed(student: str, course: str) -> dict[str, Any]:
    return {"student_id": student, "course_id": course, "completed_at": "2026-11-26T09:00:00Z"}


def referral(referral_id: str, referrer: str, reward: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "referral_id": referral_id,
        "referrer_id": referrer,
        "referred_student_id": f"friend-of-{referrer}",
    }
    if reward is not None:
        data["reward_coins"] = reward
    return data


def adjustment(
    adjustment_id: str, student: str, amount: int, role: str = "admin"
) -> dict[str, Any]:
    return {
        "adjustment_id": adjustment_id,
        "student_id": student,
        "amount": amount,
        "reason": "support ticket",
        "actor": {"id": "staff-1", "role": role},
    }


def redemption(redemption_id: str, student: str, amount: int) -> dict[str, Any]:
    return {"redemption_id": redemption_id, "student_id": student, "amount": amount, "item": "mug"}


def item_redemption(redemption_id: str, student: str, item_id: str) -> dict[str, Any]:
    return {"redemption_id": redemption_id, "student_id": student, "item_id": item_id}


def catalog_item(
    item_id: str,
    version: int = 1,
    *,
    cost: int = 100,
    stock: int | None = 10,
    role: str = "admin",
    **fields: Any,
) -> dict[str, Any]:
    """A `catalog.item.upserted`'s data: on offer since 2026-01-01, until `active_until`."""
    return {
        "item_id": item_id,
        "version": version,
        "title": f"voucher {item_id}",
        "cost_coins": cost,
        "stock": stock,
        "active_from": "2026-01-01T00:00:00Z",
        "actor": {"id": "staff-1", "role": role},
        **fields,
    }


def payment_request(
    payment_id: str, student: str, amount: int = 49900, currency: str = "INR"
) -> dict[str, Any]:
    return {
        "payment_id": payment_id,
        "student_id": student,
        "course_id": "course-py-101",
        "amount": amount,
        "currency": currency,
    }


def mock_webhook(
    provider_payment_id: str,
    status: str,
    secret: str,
    *,
    amount: int = 49900,
    currency: str = "INR",
    signed_at: int | None = None,
) -> dict[str, Any]:
    """The data of a `payment.webhook.received` carrying a signed mock notification, signed
    `signed_at` (default: now; the worker's own webhook topic keeps the broker's append time,
    which the signature's age is judged against)."""
    signed_at = int(time.time()) if signed_at is None else signed_at
    body = json.dumps(
        {
            "id": f"ntf-{uuid.uuid4().hex[:8]}",
            "type": f"payment.{status}",
            "data": {
                "provider_payment_id": provider_payment_id,
                "amount": amount,
                "currency": currency,
            },
        }
    )
    return {
        "provider": "mock",
        "headers": {"Stripe-Signature": stripe_signature(body, secret, signed_at)},
        "body": body,
    }


def refund_request(refund_id: str, payment_id: str, role: str = "admin") -> dict[str, Any]:
    return {
        "refund_id": refund_id,
        "payment_id": payment_id,
        "reason": "duplicate purchase",
        "actor": {"id": "staff-1", "role": role},
    }
