"""Building the events other services send, in structured or binary mode."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import RecordMetadata

STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


def structured(kind: str, data: dict[str, Any], *, event_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "type": kind,
            "source": "tests",
            "time": "2026-11-26T09:00:00Z",
            "subject": data.get("student_id") or data.get("referrer_id"),
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
        ("ce_time", b"2026-11-26T09:00:00Z"),
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
        value, headers = structured(kind, data, event_id=event_id), STRUCTURED
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
