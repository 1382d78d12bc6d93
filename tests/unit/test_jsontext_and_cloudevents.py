"""The fast paths of JSON in and out agree with the standard library's answers to the letter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from worker.core import cloudevents, jsontext
from worker.core.results import CoinsMoved, LedgerType, RuleApplied, coins_moved_json
from worker.core.types import JSON_SAFE_MAX

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
    read = jsontext.loads(text)
    assert read == json.loads(text)
    assert jsontext.loads(text.encode()) == read
    assert jsontext.loads(json.dumps(value)) == read  # every non-ASCII character escaped
    assert _types(read) == _types(json.loads(text))  # 1 stays an int, 1.0 a float


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {name: _types(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("\ufeff{}", "expected value at line 1 column 1"),  # a byte order mark
        ("{", "EOF while parsing an object"),
        ("", "EOF while parsing a value"),
        ("[1,]", "trailing comma"),
        ("[1] [2]", "trailing characters"),
        ('"\x01"', "control character"),
        ("[01]", "invalid number"),
        ('["\\ud800"]', "hex escape"),  # an escaped lone surrogate: no UTF-8 text holds one
        ('["\ud800"]', "surrogates not allowed"),  # ... or one in the str itself
        (b'["\xff"]', "invalid unicode code point"),  # not UTF-8
        ('{"a": 1}'.encode("utf-16"), "expected value"),  # UTF-8 only (RFC 8259, section 8.1)
        ("9" * 5000, "number out of range"),
    ],
)
def test_loads_refuses_what_is_not_one_json_document(bad: str | bytes, why: str) -> None:
    with pytest.raises(jsontext.JsonTextError, match=why):
        jsontext.loads(bad)


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ('{"b": {"a": 1, "a": 2}}', 'duplicate key "a"'),
        ('{"a": 1, "\\u0061": 2}', 'duplicate key "a"'),  # the same name, escaped
        ('[{"a": {"c": 1}}, {"a": {"c": 1, "d": [{"e": 1, "e": 1}]}}]', 'duplicate key "e"'),
        ('{"": 1, "": 2}', 'duplicate key ""'),
        ("[NaN]", "expected value at line 1 column 2"),
        ('{"a": Infinity}', "expected value at line 1 column 7"),
        ("[-Infinity]", "invalid number at line 1 column 3"),
    ],
)
def test_loads_refuses_repeats_and_constants_on_every_call(bad: str, why: str) -> None:
    for _ in range(2):  # nothing of one call stays for the next
        with pytest.raises(jsontext.JsonTextError, match=why):
            jsontext.loads(bad)


def test_loads_reads_what_only_looks_repeated_or_constant() -> None:
    text = '{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}], "NaN": "Infinity", "c": 1e400}'
    assert jsontext.loads(text) == {
        "a": {"a": 1},
        "b": [{"a": 2}, {"a": 3}],
        "NaN": "Infinity",
        "c": float("inf"),  # as json.loads reads a number too large for a float
    }


def test_loads_nests_201_levels_and_no_more() -> None:
    assert jsontext.loads("[" * 201 + "]" * 201) is not None
    with pytest.raises(jsontext.JsonTextError, match="recursion limit exceeded"):
        jsontext.loads("[" * 202 + "]" * 202)


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


def test_each_time_is_written_in_its_own_zone_also_right_after_an_equal_one() -> None:
    # The text of the last time is kept: an equal instant in another zone is not the same.
    utc = datetime(2026, 11, 29, 9, 30, tzinfo=UTC)
    india = utc.astimezone(timezone(timedelta(hours=5, minutes=30)))
    times = [utc, utc, india, utc, utc.replace(microsecond=1)]
    built = [json.loads(cloudevents.structured(
        event_id="e", event_type="t", source="s", subject="x", time=time, data={}
    ))["time"] for time in times]  # fmt: skip
    assert built == [
        "2026-11-29T09:30:00Z", "2026-11-29T09:30:00Z", "2026-11-29T15:00:00+05:30",
        "2026-11-29T09:30:00Z", "2026-11-29T09:30:00.000001Z",
    ]  # fmt: skip


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


# Ids as events carry them: 1 to 128 characters, none of U+0000 to U+001F and U+007F (the C1
# controls are allowed), no lone surrogate (pydantic refuses them at the edge).
CONTROLS = "".join(map(chr, range(0x20))) + "\x7f"
IDS = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters=CONTROLS), min_size=1, max_size=128
)
AMOUNTS = st.integers(1, JSON_SAFE_MAX)
RULES = st.builds(
    RuleApplied,
    version=st.integers(1, 10),
    course_tier=st.none() | st.text(max_size=10),
    base=AMOUNTS,
    tier=st.none() | st.text(max_size=10),
    multiplier=st.floats(1, 100),
)


@given(
    st.builds(
        dict,
        transaction_id=st.uuids().map(str),
        student_id=IDS,
        type=st.sampled_from(get_args(LedgerType)),
        reference_id=IDS,
        amount=AMOUNTS,
        balance_after=st.integers(0, JSON_SAFE_MAX),
        source_event_id=IDS,
        rule=st.none() | RULES,
        item_id=st.none() | IDS,
    )
)
def test_a_coin_result_built_without_the_model_is_the_models_json(fields: dict) -> None:
    assert coins_moved_json(**fields) == CoinsMoved(**fields).model_dump_json().encode()


@pytest.mark.parametrize(
    ("amount", "balance_after"),
    [(0, 1), (JSON_SAFE_MAX + 1, 1), (1, -1), (True, 1), (1, 5.0)],
)
def test_a_coin_result_out_of_range_or_not_an_int_is_refused_as_the_model_refuses_it(
    amount: object, balance_after: object
) -> None:
    fields = {
        "transaction_id": "t-1", "student_id": "s-1", "type": "redemption",
        "reference_id": "r-1", "amount": amount, "balance_after": balance_after,
        "source_event_id": "e-1",
    }  # fmt: skip
    with pytest.raises(ValidationError):
        CoinsMoved(**fields)
    with pytest.raises(ValueError, match="is invalid"):
        coins_moved_json(**fields)
