"""The events' published shapes: a JSON Schema of each event's `data`, and an AsyncAPI document.

The `data` schemas are generated from the pydantic models the worker validates input and builds
results with; the envelope and headers around them follow the CONTRACT. `payment-worker schemas`
writes everything to `schemas/`; a unit test fails when those files drift from the models.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from worker.core.cloudevents import STRUCTURED_CONTENT_TYPE
from worker.core.registry import INPUT_EVENTS, RESULT_EVENTS, SWEPT_RESULTS
from worker.core.results import SOURCE
from worker.core.topics import DLQ_TOPIC
from worker.core.types import NO_CONTROL

Schema = dict[str, Any]

# Event type (= topic) -> model of its `data`.
INBOUND: dict[str, type[BaseModel]] = {event.type: event.data for event in INPUT_EVENTS}
OUTBOUND: dict[str, type[BaseModel]] = dict(RESULT_EVENTS)

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_FILE = "asyncapi.json"
STRUCTURED = STRUCTURED_CONTENT_TYPE.decode()
_KAFKA_BINDING_VERSION = "0.5.0"

# Rules a model enforces in a field validator, which pydantic cannot see when it builds a schema.
_VALIDATOR_RULES: dict[tuple[str, str], Schema] = {
    ("coins.adjustment.requested", "amount"): {"not": {"const": 0}},
}
# What models' own validators require of a whole `data` object, where JSON Schema can say it.
_MODEL_RULES: dict[str, Schema] = {
    "coins.redemption.requested": {
        "anyOf": [
            {"required": ["item_id"], "properties": {"item_id": {"type": "string"}}},
            {
                "required": ["amount", "item"],
                "properties": {"amount": {"type": "integer"}, "item": {"type": "string"}},
            },
        ]
    },
}

_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_CONTROL}
_ATTRIBUTE = {"type": "string", "minLength": 1, "maxLength": 1000, "pattern": NO_CONTROL}

_ENVELOPE: Schema = {
    "type": "object",
    "description": (
        "A structured-mode CloudEvents 1.0 event: the Kafka value. In binary mode (accepted on "
        "input) the attributes travel in `ce_*` headers and the value is `data` alone. Every "
        "attribute is required, in and out; an input event missing one is dead-lettered."
    ),
    "properties": {
        "specversion": {"const": "1.0"},
        "id": _ID,
        "type": {**_ATTRIBUTE, "description": "The event type = topic."},
        "source": {
            **_ATTRIBUTE,
            "description": "With `id`, what identifies the event: a redelivery repeats its answer.",
        },
        "time": {"type": "string", "format": "date-time"},
        "subject": {
            **_ATTRIBUTE,
            "description": (
                "Whom the event is about, equal to the Kafka key: the student (for a referral, the"
                " referrer; for a webhook, the provider payment id). Key, subject and data must"
                " agree."
            ),
        },
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
    },
    "required": [
        "specversion",
        "id",
        "type",
        "source",
        "time",
        "subject",
        "datacontenttype",
        "data",
    ],
}

_OUTBOUND_HEADERS: Schema = {
    "type": "object",
    "properties": {"content-type": {"const": STRUCTURED}},
    "required": ["content-type"],
}

_INBOUND_HEADERS: Schema = {
    "type": "object",
    "description": (
        f"Structured mode: `content-type: {STRUCTURED}` and the value is the whole event. "
        "Binary mode, chosen by the presence of `ce_specversion`: each attribute is a `ce_*` "
        "header, `content-type: application/json` is `datacontenttype`, and the value is the "
        "event's `data`."
    ),
    "properties": {
        "content-type": {"type": "string"},
        **{
            f"ce_{name}": {"type": "string", "description": f"Binary mode: `{name}`."}
            for name in ("specversion", "id", "type", "source", "time", "subject")
        },
    },
}


def data_schema(event_type: str, model: type[BaseModel], *, inbound: bool) -> Schema:
    """The JSON Schema of the `data` of `event_type` events."""
    generated = model.model_json_schema(mode="validation" if inbound else "serialization")
    for (kind, field), rule in _VALIDATOR_RULES.items():
        if kind == event_type:
            generated["properties"][field].update(rule)
    generated.update(_MODEL_RULES.get(event_type, {}))
    if inbound:
        role = (
            "which payment-worker consumes. Unknown fields are ignored; an event whose data "
            f"fails this schema is dead-lettered to `{DLQ_TOPIC}`."
        )
    else:
        role = "which payment-worker publishes."
    notes = generated.pop("description", None)
    generated.pop("title", None)
    description = f"The `data` of a `{event_type}` CloudEvent, {role}"
    return {
        "$schema": DRAFT_2020_12,
        "$id": f"urn:payment-worker:schema:{event_type}",
        "title": event_type,
        "description": f"{description} {notes}" if notes else description,
        **generated,
    }


def asyncapi() -> Schema:
    """The AsyncAPI 3.0.0 document of every topic the worker consumes or publishes."""
    channels: Schema = {}
    operations: Schema = {}
    messages: Schema = {}

    def add(topic: str, action: str, message_id: str, message: Schema, about: str) -> None:
        messages[message_id] = message
        channels[topic] = {
            "address": topic,
            "description": about,
            "messages": {message_id: {"$ref": f"#/components/messages/{message_id}"}},
        }
        operations[f"{action}.{topic}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{topic}"},
            "messages": [{"$ref": f"#/channels/{topic}/messages/{message_id}"}],
        }

    for event in INPUT_EVENTS:
        description = data_schema(event.type, event.data, inbound=True)["description"]
        message = _event_message(event.type, description, inbound=True)
        answers = ", ".join(f"`{result}`" for result in event.results)
        about = f"Consumed by the worker ({event.effect}); answered on {answers}."
        add(event.type, "receive", event.type, message, about)
    for event_type, model in OUTBOUND.items():
        description = data_schema(event_type, model, inbound=False)["description"]
        message = _event_message(event_type, description, inbound=False)
        about = "Published by the worker."
        if event_type in SWEPT_RESULTS:
            about = "Published by the worker's expiry sweep, for what fell due."
        add(event_type, "send", event_type, message, about)
    add(DLQ_TOPIC, "send", "dead-letter", _dead_letter_message(), "Published by the worker.")

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "payment-worker",
            "version": metadata.version("payment-worker"),
            "description": (
                "Every message is a CloudEvents 1.0 event whose `type` equals its topic. The "
                "worker publishes in structured mode and accepts structured and binary mode. "
                "Deployed topic names carry `KAFKA_TOPIC_PREFIX` (empty by default) in front."
            ),
        },
        "defaultContentType": STRUCTURED,
        "servers": {
            "default": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "The local broker (`KAFKA_BOOTSTRAP_SERVERS` default).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "CloudEvent": _ENVELOPE,
                "InboundHeaders": _INBOUND_HEADERS,
                "OutboundHeaders": _OUTBOUND_HEADERS,
            },
        },
    }


def render() -> dict[str, str]:
    """File name -> text of every file `write` produces."""
    documents = {
        **{f"{t}.json": data_schema(t, m, inbound=True) for t, m in INBOUND.items()},
        **{f"{t}.json": data_schema(t, m, inbound=False) for t, m in OUTBOUND.items()},
        ASYNCAPI_FILE: asyncapi(),
    }
    return {name: json.dumps(doc, indent=2) + "\n" for name, doc in documents.items()}


def write(directory: Path) -> list[Path]:
    """Write every schema and the AsyncAPI document into `directory`; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def _event_message(event_type: str, description: str, *, inbound: bool) -> Schema:
    attributes: Schema = {"type": {"const": event_type}, "data": {"$ref": f"./{event_type}.json"}}
    if not inbound:
        attributes["source"] = {"const": SOURCE}
    return {
        "name": event_type,
        "title": event_type,
        "description": description,
        "contentType": STRUCTURED,
        "headers": {"$ref": f"#/components/schemas/{'In' if inbound else 'Out'}boundHeaders"},
        "payload": {
            "allOf": [{"$ref": "#/components/schemas/CloudEvent"}],
            "properties": attributes,
        },
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": _key_description(event_type)},
                "bindingVersion": _KAFKA_BINDING_VERSION,
            }
        },
    }


def _key_description(event_type: str) -> str:
    if event_type == "payment.webhook.received":
        return (
            "The provider's payment id, equal to `subject`: the ingress knows no student. One "
            "payment's notifications stay in order on one partition."
        )
    if event_type == "payment.rejected":
        return (
            "The student id of the payment, equal to `subject`; when the payment is unknown "
            "(or a webhook's signature fails), the key of the refused event."
        )
    return (
        "The student id the event is about, equal to `subject` (for `referral.succeeded` the "
        "referrer): one student's events stay in order on one partition."
    )


def _dead_letter_message() -> Schema:
    header = {"type": "string"}
    return {
        "name": "dead-letter",
        "title": "Dead-lettered record",
        "summary": "A consumed record that is bad input, byte for byte with its key and headers.",
        "description": (
            "A record that cannot be decoded, has no valid envelope, has an unknown type or "
            "whose `data` fails its schema; or a record whose processing failed for a reason "
            "retrying cannot cure (isolated from its batch). Its value, key and headers are the "
            "original ones, less input headers named `dlq.*`; the `dlq.*` headers are added and "
            "say why and where it came from. A copy that would not fit the broker's limit is "
            "truncated (value first), and says so with `dlq.truncated` and `dlq.original.size`. "
            "A record the Kafka client cannot parse is copied without key, value or headers."
        ),
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "properties": {
                "dlq.error.class": {**header, "description": "The error's class name."},
                "dlq.error.message": {
                    **header,
                    "description": "What was wrong (one line, at most 1000 characters).",
                },
                "dlq.source.topic": {**header, "description": "The topic it was consumed from."},
                "dlq.source.partition": {**header, "description": "Its partition, in decimal."},
                "dlq.source.offset": {**header, "description": "Its offset, in decimal."},
                "dlq.failed.at": {
                    **header,
                    "format": "date-time",
                    "description": "When the worker refused it (ISO 8601, UTC).",
                },
                "dlq.truncated": {
                    "const": "true",
                    "description": "Present when the copy is not the whole record.",
                },
                "dlq.original.size": {
                    **header,
                    "description": "With dlq.truncated: bytes of the original key, value and "
                    "headers, in decimal.",
                },
            },
            "required": [
                "dlq.error.class",
                "dlq.error.message",
                "dlq.source.topic",
                "dlq.source.partition",
                "dlq.source.offset",
                "dlq.failed.at",
            ],
            "additionalProperties": True,
        },
        "payload": {
            "description": "The original bytes of the record's value: no schema, maybe not JSON."
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The original record's key, unchanged (absent if it had none).",
                },
                "bindingVersion": _KAFKA_BINDING_VERSION,
            }
        },
    }
