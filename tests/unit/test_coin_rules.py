"""Coin rules (CONTRACT section 10): the rules file, course rewards by tier, student tiers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.core.coins import CoinCommand, Run, StreakState, Wallet, decide_coins
from worker.core.commands import command_for
from worker.core.handlers import Policies, Rewards
from worker.core.rules import CoinRules, RulesError, parse_rules
from worker.core.signatures import WebhookVerifier
from worker.settings import ConfigError, load_settings

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
EXAMPLE = """
version = 3
[course_rewards]
default = 100
advanced = 200
[[student_tiers]]
name = "gold"
min_lifetime_earned = 20000
multiplier = 2
[[student_tiers]]
name = "silver"
min_lifetime_earned = 5000
multiplier = 1.5
"""
RULES = parse_rules(EXAMPLE, 1_000_000)


def test_the_example_file_reads_as_written() -> None:
    assert (RULES.version, RULES.default_reward, dict(RULES.course_rewards)) == (
        3, 100, {"advanced": 200},
    )  # fmt: skip
    assert [(t.name, t.min_lifetime_earned, t.multiplier) for t in RULES.student_tiers] == [
        ("silver", 5000, 1.5), ("gold", 20000, 2.0),
    ]  # fmt: skip
    assert RULES.streaks == ()


def test_a_course_earns_its_tiers_reward_and_an_unknown_or_missing_tier_the_default() -> None:
    assert RULES.course_reward("advanced") == 200
    assert RULES.course_reward("unheard-of") == 100
    assert RULES.course_reward(None) == 100


def test_the_highest_tier_reached_wins() -> None:
    assert RULES.tier_for(4999) is None
    assert RULES.tier_for(5000).name == "silver"  # type: ignore[union-attr]
    assert RULES.tier_for(10**9).name == "gold"  # type: ignore[union-attr]


@given(
    base=st.integers(1, 1_000_000),
    hundredths=st.integers(100, 10_000),  # multipliers 1.00 .. 100.00, as a file writes them
)
def test_a_multiplied_reward_is_rounded_down_exactly(base: int, hundredths: int) -> None:
    multiplier = float(Decimal(hundredths) / 100)
    text = f'version = 1\n[course_rewards]\ndefault = {base}\n[[student_tiers]]\nname = "t"\n'
    text += f"min_lifetime_earned = 0\nmultiplier = {multiplier!r}\n"
    rules = parse_rules(text, 10**12)
    credit = course_credit(rules, lifetime_earned=0)
    # Integer arithmetic, no float: 0.29 x 100 is 29, not 28.999999999999996 rounded down.
    assert credit["amount"] == base * hundredths // 100
    assert credit["rule"]["multiplier"] == multiplier


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("version = [", "not TOML"),
        ("[course_rewards]\ndefault = 1", "version must be an integer"),
        ("version = 1", "[course_rewards] needs a default"),
        ("version = 1\n[course_rewards]\ndefault = 0", "course_rewards.'default' must be"),
        ("version = 1\n[course_rewards]\ndefault = 2000000", "course_rewards.'default' must be"),
        ("version = 1\ncolour = 2\n[course_rewards]\ndefault = 1", "unknown keys: 'colour'"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = 0.5", "multiplier must be a number from 1"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = nan", "multiplier must be a number from 1"),
        ("version = 1\n[course_rewards]\ndefault = 600000\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = 2", "exceeds COIN_MAX_AMOUNT"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 5\nmultiplier = 2", "student_tiers name repeats"),
        ("version = 1\nstudent_tiers = 3\n[course_rewards]\ndefault = 1", "array of tables"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[streaks]]\ndays = 0\nbonus = 5",
         "streaks[0].days must be"),
        ("version = true\n[course_rewards]\ndefault = 1", "version must be an integer"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = " + "9" * 400, "multiplier must be a number"),
        ("version = 1\n[course_rewards]\ndefault = 1\n\"a\\nb\" = 0",
         "course_rewards.'a\\nb' must be"),
        ("x = " + "[" * 5000 + "]" * 5000, "not TOML"),
        ("version = 1e99999999999999999999\n[course_rewards]\ndefault = 1", "not TOML"),
        ("version = " + "9" * 5000 + "\n[course_rewards]\ndefault = 1", "not TOML"),
        ("version = 1\n\"a\\nb\" = 1\n[course_rewards]\ndefault = 1",
         r"the file has unknown keys: 'a\nb'"),
        ("version = 1\n[course_rewards]\ndefault = 1\n[[student_tiers]]\nname = 'a'\n"
         "min_lifetime_earned = 0\nmultiplier = 1.1499999999999999999",
         "more digits than a JSON number keeps"),
    ],
)  # fmt: skip
def test_a_bad_rules_file_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(RulesError, match=re.escape(says)):
        parse_rules(text, 1_000_000)


def test_a_bad_file_stops_the_start_with_one_line_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = tmp_path / "rules.toml", tmp_path / "bad.toml"
    good.write_text(EXAMPLE)
    bad.write_text("version = 1\n[course_rewards]\nadvanced = 5\n")
    monkeypatch.setenv("COIN_RULES_FILE", str(good))
    assert load_settings(env_file=None).coin_rules_file == good
    for path, says in ((bad, "needs a default"), (tmp_path / "none.toml", "does not point")):
        monkeypatch.setenv("COIN_RULES_FILE", str(path))
        with pytest.raises(ConfigError) as raised:
            load_settings(env_file=None)
        assert str(raised.value).startswith("config error: COIN_RULES_FILE: ")
        assert says in str(raised.value)
        assert "\n" not in str(raised.value)
    monkeypatch.setenv("COIN_RULES_FILE", "")  # as docker-compose passes an unset one
    assert load_settings(env_file=None).coin_rules_file is None


# --- through the handler and the ledger's decisions --------------------------------------------


def completion(
    rules: CoinRules | None,
    course: str = "c-1",
    tier: str | None = None,
    completed_at: str = "2026-11-28T08:00:00Z",
) -> Any:
    data: dict[str, Any] = {"student_id": "s", "course_id": course,
                            "completed_at": completed_at}  # fmt: skip
    if tier is not None:
        data["course_tier"] = tier
    value = json.dumps({
        "specversion": "1.0", "id": f"e-{course}", "type": "course.completed", "source": "lms",
        "time": "2026-11-28T08:00:00Z", "subject": "s", "datacontenttype": "application/json",
        "data": data,
    }).encode()  # fmt: skip
    policies = Policies(Rewards(100, 50, 1_000_000), WebhookVerifier({}), rules=rules)
    command = command_for("course.completed", b"s", value, (), policies)
    assert isinstance(command, CoinCommand)
    return command


def course_credit(
    rules: CoinRules | None, lifetime_earned: int, tier: str | None = None
) -> dict[str, Any]:
    wallet = Wallet(lifetime_earned, lifetime_earned, 0)
    plan = decide_coins([completion(rules, tier=tier)], {}, {"s": wallet}, NOW)
    data: dict[str, Any] = json.loads(plan.messages[0].value or b"")["data"]
    return data


def test_a_course_credit_says_how_its_reward_was_reckoned() -> None:
    assert course_credit(RULES, 4999, "advanced")["amount"] == 200
    assert course_credit(RULES, 4999, "advanced")["rule"] == {
        "version": 3, "course_tier": "advanced", "base": 200, "tier": None, "multiplier": 1.0,
    }  # fmt: skip
    silver = course_credit(RULES, 5000, "advanced")
    assert (silver["amount"], silver["balance_after"]) == (300, 5300)
    assert silver["rule"] == {
        "version": 3, "course_tier": "advanced", "base": 200, "tier": "silver",
        "multiplier": 1.5,
    }  # fmt: skip
    assert course_credit(RULES, 25000)["amount"] == 200  # gold doubles the default


def test_without_a_rules_file_a_credit_reads_as_it_always_did() -> None:
    credit = course_credit(None, 10**6, "advanced")
    assert credit["amount"] == 100
    assert "rule" not in credit


def test_a_replay_repeats_its_stored_result_whatever_the_rules_say_now() -> None:
    wallets = {"s": Wallet(6000, 6000, 0)}
    first = decide_coins([completion(RULES)], {}, wallets, NOW)
    changed = parse_rules(EXAMPLE.replace("version = 3", "version = 4").replace("100", "70"),
                          1_000_000)  # fmt: skip
    again = decide_coins(
        [completion(changed)], first.decisions, first.wallets, NOW
    )  # a new event for the same course: a replay, not a conflict
    assert again.messages == first.messages
    assert [outcome for _, outcome in again.outcomes] == ["duplicate"]


# --- streaks ----------------------------------------------------------------------------------

STREAKY = parse_rules(EXAMPLE + "[[streaks]]\ndays = 3\nbonus = 50\n[[streaks]]\ndays = 5\n"
                      "bonus = 120\n", 1_000_000)  # fmt: skip
DAY1 = date(2026, 11, 1)


def on(day: int, course: str | None = None, event: str | None = None) -> CoinCommand:
    """A completion of `course` on November `day` (UTC; 23:30 at +05:30 is the day before)."""
    command = completion(STREAKY, course or f"c-{day}")
    assert command.reward is not None
    reward = replace(command.reward, day=DAY1 + timedelta(days=day - 1))
    return replace(command, reward=reward, source_event_id=event or f"e-{course or day}")


class Ledger:
    """Batches one after another, each seeing what the ones before committed."""

    def __init__(self) -> None:
        self.known: dict[Any, Any] = {}
        self.wallets: dict[str, Wallet] = {}
        self.runs: dict[str, tuple[Run, ...]] = {}
        self.bonuses: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.paid: list[tuple[str, int]] = []

    def batch(self, *commands: CoinCommand) -> list[dict[str, Any]]:
        plan = decide_coins(commands, self.known, self.wallets, NOW, {},
                            StreakState(self.runs, self.bonuses))  # fmt: skip
        self.known |= plan.decisions
        self.wallets |= plan.wallets
        self.runs |= plan.runs
        for entry in plan.entries:
            if entry.ledger_type == "streak_bonus":
                self.paid.append((entry.reference_id, entry.amount))
                earned = (entry.student_id, entry.source_event_id)
                message = plan.decisions[(entry.student_id, "streak_bonus", entry.reference_id)]
                self.bonuses[earned] = (*self.bonuses.get(earned, ()), message.result)
        return [json.loads(m.value or b"")["data"] for m in plan.messages]


def test_a_third_day_in_a_row_pays_the_three_day_bonus_after_its_credit() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2))
    third = ledger.batch(on(3))
    assert [(d["type"], d["reference_id"], d["amount"]) for d in third] == [
        ("course_completion", "c-3", 100), ("streak_bonus", "streak:2026-11-01:3", 50),
    ]  # fmt: skip
    assert third[1]["balance_after"] == 350
    assert third[1]["source_event_id"] == "e-3"
    assert "rule" not in third[1]


def test_a_day_counted_already_adds_nothing() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2, "c-2a"), on(2, "c-2b"))  # two courses on day 2
    assert ledger.paid == []
    assert ledger.runs["s"] == (Run(DAY1, DAY1 + timedelta(days=1)),)


def test_a_growing_streak_pays_each_length_once() -> None:
    ledger = Ledger()
    for day in range(1, 8):
        ledger.batch(on(day))
    assert ledger.paid == [("streak:2026-11-01:3", 50), ("streak:2026-11-01:5", 120)]


def test_a_day_that_joins_two_runs_makes_one_streak_named_by_its_first_day() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2), on(4), on(5))
    assert ledger.paid == []
    ledger.batch(on(3))
    assert ledger.runs["s"] == (Run(DAY1, DAY1 + timedelta(days=4)),)
    assert ledger.paid == [("streak:2026-11-01:3", 50), ("streak:2026-11-01:5", 120)]


def test_a_day_before_a_streak_renames_it_but_pays_no_length_twice() -> None:
    ledger = Ledger()
    ledger.batch(on(2), on(3), on(4))
    ledger.batch(on(1))  # a late completion, dated the day before: 4 days, no new length
    assert ledger.paid == [("streak:2026-11-02:3", 50)]
    ledger.batch(on(5))
    assert ledger.paid == [("streak:2026-11-02:3", 50), ("streak:2026-11-01:5", 120)]


def test_days_in_any_order_pay_a_stretch_the_same() -> None:
    forward, backward = Ledger(), Ledger()
    for day in range(1, 11):
        forward.batch(on(day))
    backward.batch(*[on(day) for day in range(10, 0, -1)])  # an offline sync, newest first
    assert sum(a for _, a in backward.paid) == sum(a for _, a in forward.paid) == 170


def test_a_replay_counts_no_day_and_a_redelivery_repeats_the_bonus_it_earned() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2))
    first = ledger.batch(on(3))
    assert ledger.batch(on(3, "c-3", event="e-other")) == first[:1]  # a replay: the credit only
    assert ledger.batch(on(3)) == first  # its own event again: the credit and the bonus
    assert len(ledger.paid) == 1


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(1, 5))
def test_runs_are_the_days_consecutive_stretches_and_no_bonus_is_paid_twice(
    days: list[int], per_batch: int
) -> None:
    ledger = Ledger()
    commands = [on(day, f"c-{n}") for n, day in enumerate(days)]
    for start in range(0, len(commands), per_batch):
        ledger.batch(*commands[start : start + per_batch])
    distinct = sorted(set(days))
    stretches: list[list[int]] = []
    for day in distinct:
        if stretches and stretches[-1][-1] == day - 1:
            stretches[-1].append(day)
        else:
            stretches.append([day])
    expected = tuple(
        Run(DAY1 + timedelta(days=s[0] - 1), DAY1 + timedelta(days=s[-1] - 1)) for s in stretches
    )
    assert ledger.runs["s"] == expected
    references = [reference for reference, _ in ledger.paid]
    assert len(references) == len(set(references))
    paid = [(date.fromisoformat(r.split(":")[1]), int(r.split(":")[2])) for r in references]
    for run in expected:  # each length a final run reached is paid within it, once or more
        for streak in STREAKY.streaks:
            within = [first for first, days in paid if days == streak.days and run.holds(first)]
            assert bool(within) == (run.days >= streak.days)
            # Once, unless runs that each reached it were joined later.
            assert len(within) <= max(1, run.days // streak.days)


def test_a_redelivered_completion_repeats_its_bonus_whatever_the_rules_say_now() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2))
    first = ledger.batch(on(3))
    without_rules = replace(on(3), reward=None)  # the worker came back without a rules file
    assert ledger.batch(without_rules) == first


def test_a_completion_at_the_calendars_end_is_credited_and_counts_no_day() -> None:
    for completed_at in ("0001-01-01T01:00:00+05:30", "9999-12-31T23:00:00Z"):
        command = completion(STREAKY, completed_at=completed_at)
        assert command.reward is not None
        assert command.reward.day is None
        plan = decide_coins([command], {}, {}, NOW, {}, StreakState())
        assert [e.ledger_type for e in plan.entries] == ["course_completion"]
        assert not plan.runs


def test_a_completion_delivered_twice_in_one_batch_repeats_its_bonus_too() -> None:
    ledger = Ledger()
    ledger.batch(on(1), on(2))
    both = ledger.batch(on(3), on(3))  # the same record twice (a producer's retry)
    assert [(d["type"], d["reference_id"]) for d in both] == [
        ("course_completion", "c-3"), ("streak_bonus", "streak:2026-11-01:3"),
    ] * 2  # fmt: skip
    assert len(ledger.paid) == 1
