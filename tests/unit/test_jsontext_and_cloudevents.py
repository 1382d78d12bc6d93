"""The fast paths of JSON in and out agree with the standard library's answers to the letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core import cloudevents, jsontext
from worker.core.results import CoinsMoved, RuleApplied

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_loads_reads_what_json_loads_reads(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.loads(text.encode("utf-16")) == json.loads(text.encode("utf-16"))


def test_loads_refuses_what_json_loads_refuses() -> None:
    for bad in ("\ufeff{}", "{", "", "[1,]"):
        with pytest.raises(json.JSONDecodeError):
            json.loads(bad)
        with pytest.raises(json.JSONDecodeError):
            jsontext.loads(bad)


def test_loads_refuses_repeats_and_constants_on_every_call() -> None:
    for _ in range(2):  # one decoder serves every call
        with pytest.raises(jsontext.JsonTextError, match="'a' is repeated"):
            jsontext.loads('{"b": {"a": 1, "a": 2}}')
        with pytest.raises(jsontext.JsonTextError, match="NaN is not a JSON number"):
            jsontext.loads("[NaN]")


@given(
    st.text(),
    st.text(),
    st.text(),
    st.text(),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
    st.dictionaries(st.text(), json_values, max_size=3),
)
def test_structured_json_is_json_dumps_of_the_attributes(
    event_id: str, event_type: str, source: str, subject: str, time: datetime, data: dict
) -> None:
    data_json = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    expected = json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "type": event_type,
            "source": source,
            "time": time.isoformat().replace("+00:00", "Z"),
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    built = cloudevents.structured_json(
        event_id=event_id,
        event_type=event_type,
        source=source,
        subject=subject,
        time=time,
        data_json=data_json,
    )
    assert built == expected


def test_a_coin_result_leaves_out_rule_and_item_id_when_none_and_only_those() -> None:
    moved = {
        "transaction_id": "t-1", "student_id": "s-1", "type": "redemption",
        "reference_id": "r-1", "amount": 10, "balance_after": 90, "source_event_id": "e-1",
    }  # fmt: skip
    plain = json.loads(CoinsMoved(**moved).model_dump_json())
    assert plain == moved
    rule = RuleApplied(version=1, course_tier=None, base=100, tier=None, multiplier=1.0)
    full = json.loads(CoinsMoved(**moved, rule=rule, item_id="mug").model_dump_json())
    assert full["item_id"] == "mug"
    # Inside the rule, a None is written as null: only the two optional fields are left out.
    assert full["rule"] == {
        "version": 1, "course_tier": None, "base": 100, "tier": None, "multiplier": 1.0
    }  # fmt: skip
