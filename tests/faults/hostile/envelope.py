"""The envelope: CloudEvents attributes in structured or binary mode, in many valid spellings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.faults.hostile.model import EventKey, Fact, Input

STRUCTURED = [("content-type", b"application/cloudevents+json; charset=UTF-8")]

# One instant, four spellings: webhook signatures are checked against the event's `time`.
TIMES = (
    "2026-11-26T09:00:00Z",
    "2026-11-26T14:30:00+05:30",
    "2026-11-26T04:00:00-05:00",
    "2026-11-26T09:00:00.000000+00:00",
)
SOURCES = (
    "tests/hostile-stream",
    "https://ingress.example/ünïcode/" + "ß" * 900,
    "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
)
ATTRIBUTES = ("specversion", "id", "type", "source", "time", "subject", "datacontenttype")
# Headers by which an input would say where it failed: the worker drops them from its copy.
FORGED_DLQ_HEADERS = [("dlq.source.offset", b"0"), ("DLQ.Source.Topic", b"elsewhere")]
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True)
class Style:
    binary: bool
    ascii: bool  # JSON with \u escapes only, or raw UTF-8
    time: str
    source: str
    order: tuple[str, ...]  # of the attributes and data in a structured value
    extension: bool  # carries a `traceparent` extension attribute
    forged_dlq: bool


styles = st.builds(
    Style,
    binary=st.booleans(),
    ascii=st.booleans(),
    time=st.sampled_from(TIMES),
    source=st.sampled_from(SOURCES),
    order=st.permutations((*ATTRIBUTES, "data")).map(tuple),
    extension=st.booleans(),
    forged_dlq=st.sampled_from([False, False, False, True]),
)
PLAIN = Style(False, False, TIMES[0], SOURCES[0], (*ATTRIBUTES, "data"), False, False)


class Raw:
    """JSON text put into a document as it is (what `json.dumps` cannot write)."""

    def __init__(self, text: str) -> None:
        self.text = text


MISSING: Any = object()  # an attribute or member left out


def dumps(document: Any, *, ascii: bool) -> str:
    raws: list[str] = []

    def swap(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@hostile-raw-{len(raws) - 1}@@"
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items() if v is not MISSING}
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(document), ensure_ascii=ascii, separators=(",", ":"))
    for n, raw in enumerate(raws):
        text = text.replace(f'"@@hostile-raw-{n}@@"', raw)
    return text


def repeat_member(text: str, where: str, data: dict[str, Any]) -> str:
    """`text` with a member name repeated: in the envelope, in `data`, or in the actor."""
    if where == "envelope":
        return '{"specversion":"1.0",' + text[1:]
    if where == "actor":
        at = text.index('"actor":{') + len('"actor":{')
        return text[:at] + '"role":"admin",' + text[at:]
    name, value = next(iter(data.items()))
    member = json.dumps(name) + ":" + json.dumps(value) + ","
    at = text.index('"data":{') + len('"data":{') if '"data":{' in text else 1
    return text[:at] + member + text[at:]


@dataclass
class Draft:
    """An event before it is encoded; malformed inputs are drafts with something broken."""

    kind: str
    data: Any
    subject: str
    event_id: str
    style: Style
    attributes: dict[str, Any] = field(default_factory=dict)  # overrides (MISSING: left out)
    repeated: str | None = None  # where a member name is repeated

    @property
    def event(self) -> EventKey:
        return (self.style.source, self.event_id)

    def encode(self) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        forged = FORGED_DLQ_HEADERS if self.style.forged_dlq else []
        if self.style.binary:
            text, headers = self._binary()
        else:
            text, headers = self._structured(), STRUCTURED
        return self.subject.encode(), text.encode(), headers + forged

    def input(self, kind: str, phase: int, fact: Fact | None) -> Input:
        key, value, headers = self.encode()
        return Input(kind, self.kind, key, value, headers, phase, fact)

    def _attributes(self) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": self.event_id,
            "type": self.kind,
            "source": self.style.source,
            "time": self.style.time,
            "subject": self.subject,
            "datacontenttype": "application/json",
            **self.attributes,
        }

    def _binary(self) -> tuple[str, list[tuple[str, bytes]]]:
        """The attributes in headers, the value the data alone."""
        style, attributes = self.style, self._attributes()
        headers = [
            ("content-type" if name == "datacontenttype" else f"ce_{name}", str(value).encode())
            for name in style.order
            if name != "data" and (value := attributes.get(name, MISSING)) is not MISSING
        ]
        if style.extension:
            headers.append(("ce_traceparent", TRACEPARENT.encode()))
        text = dumps(self.data, ascii=style.ascii)
        if self.repeated:
            where = "data" if self.repeated == "envelope" else self.repeated
            text = repeat_member(text, where, self.data)
        return text, headers

    def _structured(self) -> str:
        """The attributes and the data in one JSON document."""
        style, attributes = self.style, self._attributes()
        document = {
            name: self.data if name == "data" else attributes.get(name, MISSING)
            for name in style.order
        }
        if style.extension:
            document["traceparent"] = TRACEPARENT
        text = dumps(document, ascii=style.ascii)
        if self.repeated:
            text = repeat_member(text, self.repeated, self.data)
        return text
