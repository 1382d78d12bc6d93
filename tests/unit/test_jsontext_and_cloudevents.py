"""The fast paths of JSON in and out agree with the standard library's answers to the letter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import get_args

import jiter
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
    with _jiter_alone():
        read = jsontext.loads(text)
        assert jsontext.loads(text.encode()) == read
        assert jsontext.loads(json.dumps(value)) == read  # every non-ASCII character escaped
    assert read == json.loads(text)
    assert _types(read) == _types(json.loads(text))  # 1 stays an int, 1.0 a float


@contextmanager
def _jiter_alone() -> Iterator[None]:
    """The standard library's decoder fails the test if it is asked: jiter reads alone."""

    def asked(text: str | bytes) -> object:
        raise AssertionError(f"jiter refused {text!r}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsontext, "_strict_loads", asked)
        yield


def _types(value: object) -> object:
    if isinstance(value, dict):
        return {name: _types(member) for name, member in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


# Edits that may make a document invalid, ambiguous, or merely odd.
EDITS = (
    "",
    ',"a":1',
    '"a":',
    "NaN",
    "-Infinity",
    "Infinity",
    '"\\ud83d"',
    '"\\udc00\\ud83d"',
    "1e400",
    "-0",
    "-0.0",
    "1E2",
    "123456789012345678901234567890",
    " ",
    "\t",
    "\x0c",
    "\ufeff",
    "\x00",
    "01",
    ".5",
    "1.",
    "]",
    "}",
    ",",
    '{"a":1,"a":2}',
    '{"a":1,"\\u0061":2}',
    "[" * 202,
    '"\\u00e9"',
    "\u00e9",
    '"\\/"',
    "true",
    "nul",
)


@given(json_values, st.data())
def test_what_jiter_reads_the_standard_library_reads_alike(
    value: object, data: st.DataObject
) -> None:
    """`loads` takes jiter's reading whenever jiter gives one: it must be the only reading."""
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans())).encode()
    at = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(EDITS)).encode("utf-8", "surrogatepass")
    edited = text[:at] + data.draw(st.sampled_from([edit, *NOT_UTF8])) + text[at:]
    try:
        fast = jiter.from_json(
            edited, allow_inf_nan=False, catch_duplicate_keys=True, cache_mode="keys"
        )
    except ValueError:
        return  # the standard library's decoder decides (the tests below)
    strict = jsontext._strict_loads(edited)
    assert repr(fast) == repr(strict)  # repr tells -0.0 from 0.0, 1 from 1.0 and True
    assert _types(fast) == _types(strict)


# Bytes no UTF-8 text holds: a stray continuation byte, an encoded surrogate, an overlong "/",
# a code point past U+10FFFF, a sequence cut short.
NOT_UTF8 = (b"\xff", b"\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82")


def test_loads_refuses_what_json_loads_refuses() -> None:
    for bad in ("\ufeff{}", "{", "", "[1,]"):
        with pytest.raises(json.JSONDecodeError):
            json.loads(bad)
        with pytest.raises(json.JSONDecodeError):
            jsontext.loads(bad)
    for raw in ('{"a": 1}'.encode("utf-16"), b"\xef\xbb\xbf{}", b'["\xff"]'):  # UTF-8 only
        with pytest.raises(ValueError, match=r"utf-8|BOM"):
            jsontext.loads(raw)


def test_loads_refuses_repeats_and_constants_on_every_call() -> None:
    for _ in range(2):  # one decoder serves every call
        with pytest.raises(jsontext.JsonTextError, match="'a' is repeated"):
            jsontext.loads('{"b": {"a": 1, "a": 2}}')
        with pytest.raises(jsontext.JsonTextError, match="'a' is repeated"):
            jsontext.loads(b'[{"c": 1}, {"a": 1, "\\u0061": 2}]')  # the same name, escaped
        with pytest.raises(jsontext.JsonTextError, match="NaN is not a JSON number"):
            jsontext.loads("[NaN]")
        with pytest.raises(jsontext.JsonTextError, match="-Infinity is not a JSON number"):
            jsontext.loads(b'{"a": -Infinity}')


def test_what_only_the_standard_library_reads_is_read_as_it_always_was() -> None:
    # An escaped lone surrogate: what JavaScript writes for a string cut inside an emoji.
    assert jsontext.loads('{"name": "Ana \\ud83d"}') == {"name": "Ana \ud83d"}
    assert jsontext.loads(b'["\\udc00"]') == ["\udc00"]
    deep = "[" * 500 + "]" * 500  # deeper than jiter's 201 levels
    assert jsontext.loads(deep) == json.loads(deep)
    with pytest.raises(jsontext.JsonTextError, match="nested too deeply"):
        jsontext.loads("[" * 100_000)


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
