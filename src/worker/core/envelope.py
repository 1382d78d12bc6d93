"""Decoding a consumed record into a CloudEvent, in structured or binary mode.

Anything that cannot be decoded is `BadInput`: the pipeline dead-letters it whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, PrivateAttr, ValidationError

from worker.core import jsontext
from worker.core.messages import Headers
from worker.core.types import Attribute, Id


class BadInputError(Exception):
    """The record is not a valid event for its topic; retrying cannot help."""


class Envelope(BaseModel):
    """The CloudEvents attributes the worker relies on, plus the raw `data`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # CONTRACT section 1: every one of these is required; a missing one is bad input.
    specversion: Literal["1.0"]
    id: Id
    type: Attribute
    source: Attribute
    subject: Attribute
    time: AwareDatetime
    datacontenttype: Literal["application/json"]
    data: Any

    @property
    def received_at(self) -> datetime:
        """When the event reached the broker: the broker's append time where the topic records
        it, which no producer can set; else the event's `time`, which its producer wrote."""
        return self.time


class AppendedEnvelope(Envelope):
    """An event from a record whose topic records the broker's append time (LogAppendTime):
    never read from the event itself, which its producer writes. Only `decode` makes one, and
    sets that time. A class of its own, so that the envelopes of other topics, nearly all of
    them, carry no private attribute (pydantic sets those up on every validation: 1.4 µs)."""

    _appended_at: datetime = PrivateAttr()

    @property
    def received_at(self) -> datetime:
        return self._appended_at


_BINARY_PREFIX = "ce_"
M = TypeVar("M", bound=BaseModel)


def _parse_json(raw: bytes | None, what: str) -> Any:
    if raw is None:
        raise BadInputError(f"{what} is empty")
    try:
        return jsontext.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors too
        raise BadInputError(f"{what} is not UTF-8 JSON: {type(exc).__name__}: {exc}") from None


def _binary_attributes(headers: Headers) -> dict[str, Any] | None:
    attributes: dict[str, Any] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered.startswith(_BINARY_PREFIX):
            attribute = lowered.removeprefix(_BINARY_PREFIX)
            try:
                text = (value or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise BadInputError(f"header {name} is not UTF-8") from None
        elif lowered == "content-type":
            attribute = "datacontenttype"
            text = (value or b"").decode("utf-8", "replace").split(";")[0].strip()
        else:
            continue
        # Like a repeated JSON member name: readers would disagree about which copy counts.
        if attribute in attributes:
            raise BadInputError(f"header {name} is given more than once")
        attributes[attribute] = text
    return attributes if "specversion" in attributes else None


def decode(
    value: bytes | None, headers: Headers, expected_type: str, appended_at: datetime | None = None
) -> Envelope:
    """The record's event; binary mode when a `ce_specversion` header is present. `appended_at`:
    when the broker appended the record, where its topic records that (None: not known)."""
    attributes = _binary_attributes(headers)
    if attributes is not None:
        fields = {**attributes, "data": _parse_json(value, "value")}
    else:
        fields = _parse_json(value, "value")
        if not isinstance(fields, dict):
            raise BadInputError("a structured-mode value must be a JSON object")
        if "data" not in fields:
            raise BadInputError("the event has no data")
    try:
        if appended_at is None:
            envelope = Envelope.model_validate(fields)
        else:
            appended = AppendedEnvelope.model_validate(fields)
            appended._appended_at = appended_at
            envelope = appended
    except ValidationError as exc:
        raise BadInputError(f"invalid envelope: {_summary(exc)}") from None
    if envelope.type != expected_type:
        raise BadInputError(f"type {envelope.type!r} does not match its topic ({expected_type!r})")
    return envelope


def parse_data(envelope: Envelope, model: type[M]) -> M:
    """The envelope's `data` as `model`, or BadInput naming the failing fields."""
    try:
        return model.model_validate(envelope.data)
    except ValidationError as exc:
        raise BadInputError(f"data fails its schema: {_summary(exc)}") from None


def _summary(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )
