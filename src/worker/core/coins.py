"""The coin ledger's rules: decide what a sequence of coin commands does to the wallets.

Pure: the adapter loads what is known (earlier decisions, wallet balances), `decide_coins`
works out effects and results in order, and the adapter writes them back in a few set-based
statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from worker.core.answers import Answers, EventKey, Outcome
from worker.core.audit import AuditRecord
from worker.core.messages import OutgoingMessage
from worker.core.results import (
    CoinRejection,
    CoinsMoved,
    CoinsRejected,
    LedgerType,
    RuleApplied,
    derived_id,
    result_message,
)
from worker.core.rules import CoinRules, multiplied
from worker.core.types import JSON_SAFE_MAX

Key = tuple[str, str, str]  # (student_id, ledger type, reference_id): CONTRACT section 3


@dataclass(frozen=True, slots=True)
class CoinCommand:
    """One requested ledger effect; `amount` is signed (+ credit, - debit)."""

    student_id: str
    ledger_type: LedgerType
    reference_id: str
    amount: int
    # The amount as the event stated it; None when it came from configuration. Replays are
    # compared on this, so a changed reward setting does not turn a replay into a conflict.
    requested_amount: int | None
    source_event_id: str
    # The consumed event's type (its topic): with its source and id, the event's identity.
    event_type: str
    authorized: bool = True
    # The stated amount is above COIN_MAX_AMOUNT (CONTRACT section 3): refused, remembered.
    exceeds_limit: bool = False
    # The event's CloudEvents `source`: with its id, what a redelivery is recognised by.
    event_source: str = ""
    # Who asked, (id, role), for a privileged request (an adjustment): its audit record names
    # them. None for the others.
    actor: tuple[str, str] | None = None
    # Why an unauthorized request is refused, for the log (never in the answer).
    unauthorized_because: str | None = None
    # A course completion under a rules file: its base reward, which the student's tier
    # multiplies when the credit is decided (`amount` is set then). None: `amount` as it is.
    reward: CourseReward | None = None
    # How the amount was reckoned, for the result (set with `amount` from `reward`).
    rule: RuleApplied | None = None

    def rewarded(self, lifetime_earned: int) -> CoinCommand:
        """This command with its amount reckoned for a student who has earned
        `lifetime_earned` before it; itself when it has no `reward`."""
        if self.reward is None:
            return self
        rules, tier = self.reward.rules, self.reward.rules.tier_for(lifetime_earned)
        rule = RuleApplied(
            version=rules.version or 0,
            course_tier=self.reward.course_tier,
            base=self.reward.base,
            tier=None if tier is None else tier.name,
            multiplier=1 if tier is None else tier.multiplier,
        )
        return replace(self, amount=multiplied(self.reward.base, tier), rule=rule)

    @property
    def key(self) -> Key:
        return (self.student_id, self.ledger_type, self.reference_id)

    @property
    def event(self) -> EventKey:
        return (self.event_type, self.event_source, self.source_event_id)


@dataclass(frozen=True, slots=True)
class CourseReward:
    """A course completion's reward under the coin rules: the base its course tier earns."""

    rules: CoinRules
    course_tier: str | None
    base: int


@dataclass(frozen=True, slots=True)
class CoinDecision:
    """What was decided for a key, kept forever: replays repeat its result byte for byte."""

    requested_amount: int | None
    outcome: Literal["applied", "rejected"]
    result: OutgoingMessage


@dataclass(frozen=True, slots=True)
class Wallet:
    balance: int = 0
    lifetime_earned: int = 0
    lifetime_spent: int = 0

    def can_move(self, amount: int) -> bool:
        """Whether no total would leave the JSON-safe range (CONTRACT section 3)."""
        if amount > 0:  # the balance never exceeds lifetime_earned
            return self.lifetime_earned + amount <= JSON_SAFE_MAX
        return self.lifetime_spent - amount <= JSON_SAFE_MAX

    def moved(self, amount: int) -> Wallet:
        if amount > 0:
            return Wallet(self.balance + amount, self.lifetime_earned + amount, self.lifetime_spent)
        return Wallet(self.balance + amount, self.lifetime_earned, self.lifetime_spent - amount)


@dataclass(frozen=True, slots=True)
class Entry:
    """A new row of `coin_transactions`."""

    transaction_id: str
    student_id: str
    ledger_type: LedgerType
    reference_id: str
    amount: int
    balance_after: int
    source_event_id: str


@dataclass
class CoinPlan:
    """Everything one batch changes; the adapter persists it in one transaction."""

    entries: list[Entry] = field(default_factory=list)
    decisions: dict[Key, CoinDecision] = field(default_factory=dict)
    wallets: dict[str, Wallet] = field(default_factory=dict)
    messages: list[OutgoingMessage] = field(default_factory=list)
    outcomes: list[tuple[CoinCommand, Outcome]] = field(default_factory=list)
    # Answers that no decision repeats (conflicts, `not_authorized`), kept by the event that got
    # them so that its redelivery repeats them byte for byte.
    answers: Answers = field(default_factory=dict)
    # The honoured privileged requests (adjustments), for the audit trail.
    audits: list[AuditRecord] = field(default_factory=list)


def transaction_id(key: Key) -> str:
    return derived_id("coin-transaction", *key)


def decide_coins(
    commands: Iterable[CoinCommand],
    known: Mapping[Key, CoinDecision],
    wallets: Mapping[str, Wallet],
    now: datetime,
    answered: Answers | None = None,
) -> CoinPlan:
    """Apply `commands` in order to `wallets`, given the `known` decisions of earlier batches
    and the answers earlier batches gave by event (`answered`)."""
    plan = CoinPlan()
    answered = answered or {}
    for command in commands:
        wallet = plan.wallets.get(command.student_id) or wallets.get(command.student_id, Wallet())
        first_answer = plan.answers.get(command.event) or answered.get(command.event)
        if first_answer is not None:
            plan.messages.append(first_answer)
            plan.outcomes.append((command, "duplicate"))
            continue
        earlier = plan.decisions.get(command.key) or known.get(command.key)
        command = command.rewarded(wallet.lifetime_earned)
        if not command.authorized:
            # Answered every time and reserves nothing: a sender without the right must not
            # take a key away from the real request (CONTRACT section 3).
            _answer_once(plan, command, "not_authorized", wallet, now)
        elif earlier is not None:
            _replay(plan, command, earlier, wallet, now)
        elif command.exceeds_limit or not wallet.can_move(command.amount):
            _refuse(plan, command, "limit_exceeded", wallet, now)
        elif wallet.balance + command.amount < 0:
            _refuse(plan, command, "insufficient_balance", wallet, now)
        else:
            _apply(plan, command, wallet, now)
        if command.actor is not None and command.authorized:
            # A privileged request's verdict depends on time (its assertion's expiry, judged
            # when its record was appended): a new record of the same event, judged later, must
            # still get this answer, so it is kept by event too.
            plan.answers.setdefault(command.event, plan.messages[-1])
    return plan


def _replay(
    plan: CoinPlan, command: CoinCommand, earlier: CoinDecision, wallet: Wallet, now: datetime
) -> None:
    if earlier.requested_amount == command.requested_amount:
        plan.messages.append(earlier.result)
        plan.outcomes.append((command, "duplicate"))
        return
    # The key is taken by another amount: refuse; the key stays the first request's.
    _answer_once(plan, command, "idempotency_conflict", wallet, now)


def _answer_once(
    plan: CoinPlan, command: CoinCommand, reason: CoinRejection, wallet: Wallet, now: datetime
) -> None:
    """A refusal that is not the key's decision: its id names the refused event, and the
    answer is kept by that event alone."""
    rejected = _rejection(command, reason, wallet.balance)
    event_id = derived_id("coins.rejected", *command.key, _ONCE[reason], command.source_event_id)
    message = result_message("coins.rejected", event_id, command.student_id, rejected, now)
    plan.answers[command.event] = message
    plan.messages.append(message)
    plan.outcomes.append((command, "rejected"))


# What the id of a once-only refusal says besides the key and the event (the first is the name
# earlier versions gave conflicts, so their ids stay as they were).
_ONCE: Mapping[CoinRejection, str] = {
    "idempotency_conflict": "conflict",
    "not_authorized": "not_authorized",
}


def _refuse(
    plan: CoinPlan, command: CoinCommand, reason: CoinRejection, wallet: Wallet, now: datetime
) -> None:
    rejected = _rejection(command, reason, wallet.balance)
    event_id = derived_id("coins.rejected", *command.key)
    message = result_message("coins.rejected", event_id, command.student_id, rejected, now)
    plan.decisions[command.key] = CoinDecision(command.requested_amount, "rejected", message)
    plan.messages.append(message)
    plan.outcomes.append((command, "rejected"))


def _apply(plan: CoinPlan, command: CoinCommand, wallet: Wallet, now: datetime) -> None:
    after = wallet.moved(command.amount)
    entry = Entry(
        transaction_id=transaction_id(command.key),
        student_id=command.student_id,
        ledger_type=command.ledger_type,
        reference_id=command.reference_id,
        amount=command.amount,
        balance_after=after.balance,
        source_event_id=command.source_event_id,
    )
    event_type = "coins.credited" if command.amount > 0 else "coins.debited"
    moved = CoinsMoved(
        transaction_id=entry.transaction_id,
        student_id=command.student_id,
        type=command.ledger_type,
        reference_id=command.reference_id,
        amount=abs(command.amount),
        balance_after=after.balance,
        source_event_id=command.source_event_id,
        rule=command.rule,
    )
    event_id = derived_id(event_type, *command.key)
    message = result_message(event_type, event_id, command.student_id, moved, now)
    plan.entries.append(entry)
    plan.wallets[command.student_id] = after
    plan.decisions[command.key] = CoinDecision(command.requested_amount, "applied", message)
    plan.messages.append(message)
    plan.outcomes.append((command, "applied"))
    if command.actor is not None:
        actor_id, actor_role = command.actor
        change = {"transaction_id": entry.transaction_id, "student_id": command.student_id,
                  "amount": command.amount, "balance_after": after.balance}  # fmt: skip
        plan.audits.append(
            AuditRecord(
                action=command.event_type,
                subject=command.student_id,
                reference_id=command.reference_id,
                actor_id=actor_id,
                actor_role=actor_role,
                event_source=command.event_source,
                event_id=command.source_event_id,
                change=change,
            )
        )


def _rejection(command: CoinCommand, reason: CoinRejection, balance: int) -> CoinsRejected:
    return CoinsRejected(
        student_id=command.student_id,
        type=command.ledger_type,
        reference_id=command.reference_id,
        reason=reason,
        balance=balance,
        source_event_id=command.source_event_id,
    )
