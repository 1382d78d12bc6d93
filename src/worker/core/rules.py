"""Coin rules (CONTRACT section 10): course rewards by tier, student tiers, streak bonuses.

Read from `COIN_RULES_FILE` (TOML) at start:

    version = 3                      # a positive integer, stored with every decision it shaped
    [course_rewards]                 # coins by course.completed's optional course_tier
    default = 100                    # a missing or unknown tier gets the default
    advanced = 200
    [[student_tiers]]                # by lifetime_earned before the credit; the highest wins
    name = "silver"
    min_lifetime_earned = 5000
    multiplier = 1.5                 # course rewards only, rounded down to whole coins
    [[streaks]]                      # consecutive UTC days with a course completion
    days = 3
    bonus = 50

Without a file the rules are the fixed reward of COIN_REWARD_COURSE_COMPLETION, with no tiers
and no streaks, and course credits carry no `rule` (sections 1-9 unchanged).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from worker.core.types import JSON_SAFE_MAX


class RulesError(ValueError):
    """The rules file is unusable; the message names the problem in one line."""


@dataclass(frozen=True, slots=True)
class StudentTier:
    name: str
    min_lifetime_earned: int
    # For the `rule` object, and exactly as written for the arithmetic (1.15 is 23/20).
    multiplier: float
    exact: Fraction


@dataclass(frozen=True, slots=True)
class Streak:
    days: int
    bonus: int


@dataclass(frozen=True)
class CoinRules:
    """The rules of a rules file (without one there are none: the fixed reward)."""

    default_reward: int
    version: int
    course_rewards: Mapping[str, int] = field(default_factory=dict)
    student_tiers: tuple[StudentTier, ...] = ()  # by min_lifetime_earned, lowest first
    streaks: tuple[Streak, ...] = ()  # by days, fewest first

    def course_reward(self, course_tier: str | None) -> int:
        """The base reward of a course of `course_tier` (a missing or unknown one: default)."""
        if course_tier is None:
            return self.default_reward
        return self.course_rewards.get(course_tier, self.default_reward)

    def tier_for(self, lifetime_earned: int) -> StudentTier | None:
        """The highest tier `lifetime_earned` reaches; None below every threshold."""
        reached = None
        for tier in self.student_tiers:
            if lifetime_earned >= tier.min_lifetime_earned:
                reached = tier
        return reached


def multiplied(base: int, tier: StudentTier | None) -> int:
    """`base` times the tier's multiplier, rounded down to whole coins."""
    if tier is None:
        return base
    return math.floor(base * tier.exact)


def parse_rules(text: str, max_amount: int) -> CoinRules:
    """The rules in `text` (TOML); RulesError naming the first problem. No amount may exceed
    `max_amount` (COIN_MAX_AMOUNT), nor a multiplied reward the JSON-safe range."""
    try:
        # Decimals, not floats: a multiplier is taken exactly as written (1.15 is 115/100).
        document = tomllib.loads(text, parse_float=Decimal)
    except (ValueError, ArithmeticError, RecursionError) as exc:
        # TOMLDecodeError, an integer too long to read, a float exponent no decimal holds, a
        # nesting too deep: all one line, never a traceback.
        raise RulesError(f"not TOML: {exc}") from None
    _only(document, {"version", "course_rewards", "student_tiers", "streaks"}, "the file")
    version = _integer(document.get("version"), "version", 1, JSON_SAFE_MAX)
    rewards = document.get("course_rewards")
    if not isinstance(rewards, dict) or "default" not in rewards:
        raise RulesError("[course_rewards] needs a default")
    course_rewards = {
        str(tier): _integer(coins, f"course_rewards.{tier!r}", 1, max_amount)
        for tier, coins in rewards.items()
    }
    default = course_rewards.pop("default")
    tiers = tuple(_tier(entry, n) for n, entry in enumerate(_tables(document, "student_tiers")))
    _unique([t.name for t in tiers], "student_tiers name")
    _unique([t.min_lifetime_earned for t in tiers], "student_tiers min_lifetime_earned")
    tiers = tuple(sorted(tiers, key=lambda t: t.min_lifetime_earned))
    largest = max([default, *course_rewards.values()])
    for tier in tiers:
        if multiplied(largest, tier) > max_amount:
            raise RulesError(
                f"student_tiers {tier.name!r}: a reward of {largest} times {tier.multiplier} "
                f"exceeds COIN_MAX_AMOUNT ({max_amount})"
            )
    streaks = tuple(
        _streak(entry, n, max_amount) for n, entry in enumerate(_tables(document, "streaks"))
    )
    _unique([s.days for s in streaks], "streaks days")
    return CoinRules(
        default_reward=default,
        version=version,
        course_rewards=course_rewards,
        student_tiers=tiers,
        streaks=tuple(sorted(streaks, key=lambda s: s.days)),
    )


def _tables(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries = document.get(name, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise RulesError(f"{name} must be an array of tables ([[{name}]])")
    return entries


def _tier(entry: dict[str, Any], n: int) -> StudentTier:
    where = f"student_tiers[{n}]"
    _only(entry, {"name", "min_lifetime_earned", "multiplier"}, where)
    name = entry.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 64 or not name.isprintable():
        raise RulesError(f"{where}.name must be 1..64 printable characters")
    minimum = _integer(entry.get("min_lifetime_earned"), f"{where}.min_lifetime_earned", 0,
                       JSON_SAFE_MAX)  # fmt: skip
    multiplier = entry.get("multiplier")
    if (
        not isinstance(multiplier, int | Decimal)
        or isinstance(multiplier, bool)
        or (isinstance(multiplier, Decimal) and not multiplier.is_finite())
        or not 1 <= multiplier <= 100  # an int of any size compares without overflow
    ):
        raise RulesError(f"{where}.multiplier must be a number from 1 to 100")
    if Decimal(repr(float(multiplier))) != multiplier:
        # The `rule` object shows it as a JSON number: it must say what was applied.
        raise RulesError(f"{where}.multiplier has more digits than a JSON number keeps")
    # The decimal the file wrote, exactly: 1.15 is 23/20, not the float nearest to it.
    exact = Fraction(multiplier)
    return StudentTier(name, minimum, float(multiplier), exact)


def _streak(entry: dict[str, Any], n: int, max_amount: int) -> Streak:
    where = f"streaks[{n}]"
    _only(entry, {"days", "bonus"}, where)
    days = _integer(entry.get("days"), f"{where}.days", 1, 366)
    return Streak(days, _integer(entry.get("bonus"), f"{where}.bonus", 1, max_amount))


def _integer(value: object, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RulesError(f"{name} must be an integer from {low} to {high}")
    return value


def _only(table: Mapping[str, object], allowed: set[str], where: str) -> None:
    if unknown := sorted(set(table) - allowed):
        raise RulesError(f"{where} has unknown keys: {', '.join(map(repr, unknown))}")


def _unique(values: list[Any], what: str) -> None:
    if len(values) != len(set(values)):
        raise RulesError(f"{what} repeats a value")
