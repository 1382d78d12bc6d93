"""The coin ledger's rules: decide what a sequence of coin commands does to the wallets.

Pure: the adapter loads what is known (earlier decisions, wallet balances), `decide_coins`
works out effects and results in order, and the adapter writes them back in a few set-based
statements.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Literal

from worker.core.answers import Answers, EventKey, Outcome
from worker.core.audit import AuditRecord
from worker.core.catalog import CatalogItem
from worker.core.messages import OutgoingMessage
from worker.core.results import (
    CoinRejection,
    CoinsExpired,
    CoinsRejected,
    EntryType,
    LedgerType,
    RuleApplied,
    coins_moved_json,
    derived_id,
    result_message,
    result_message_json,
)
from worker.core.rules import CoinRules, multiplied
from worker.core.types import JSON_SAFE_MAX
from worker.core.values import value_type

Key = tuple[str, str, str]  # (student_id, ledger type, reference_id): CONTRACT section 3


@value_type
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
    # A redemption of a catalog item (CONTRACT section 10): its price is the amount, found when
    # the debit is decided (`amount` is the stated one, or 0, until then); a price above
    # `price_cap` (COIN_MAX_AMOUNT) is refused as `limit_exceeded`, as a stated amount is.
    item_id: str | None = None
    price_cap: int | None = None

    def rewarded(self, lifetime_earned: int) -> CoinCommand:
        """This command with its amount reckoned for a student who has earned
        `lifetime_earned` before it; itself when it has no `reward`."""
        if self.reward is None:
            return self
        rules, tier = self.reward.rules, self.reward.rules.tier_for(lifetime_earned)
        rule = RuleApplied(
            version=rules.version,
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
    # The UTC day of `completed_at`, what a streak counts; None when there is no such day to
    # count (no streak rules, or a date at the very end of the calendar).
    day: date | None


@value_type
class CoinDecision:
    """What was decided for a key, kept forever: replays repeat its result byte for byte."""

    requested_amount: int | None
    outcome: Literal["applied", "rejected"]
    result: OutgoingMessage
    # The catalog item a redemption named: a replay naming another is a conflict.
    item_id: str | None = None


@value_type
class Wallet:
    balance: int = 0
    lifetime_earned: int = 0
    lifetime_spent: int = 0
    # The part of the balance held in lots, which expire (CONTRACT section 10); the rest never
    # does (coins credited while expiry was off).
    lotted: int = 0

    def can_move(self, amount: int) -> bool:
        """Whether no total would leave the JSON-safe range (CONTRACT section 3)."""
        if amount > 0:  # the balance never exceeds lifetime_earned
            return self.lifetime_earned + amount <= JSON_SAFE_MAX
        return self.lifetime_spent - amount <= JSON_SAFE_MAX

    def moved(self, amount: int, lotted: int = 0) -> Wallet:
        """The wallet after `amount` (signed), of which `lotted` (signed too) moved in lots."""
        earned, spent = self.lifetime_earned, self.lifetime_spent
        if amount > 0:
            earned += amount
        else:
            spent -= amount
        return Wallet(self.balance + amount, earned, spent, self.lotted + lotted)


@dataclass(frozen=True, slots=True)
class Lot:
    """A credit's coins that expire together at `expires_at` (CONTRACT section 10), named by
    the credit's transaction id; `remaining` of its `amount` is left."""

    transaction_id: str
    student_id: str
    amount: int
    remaining: int
    expires_at: datetime
    # The credit's source event, which the entry that expires the lot names.
    source_event_id: str = ""

    @property
    def order(self) -> tuple[datetime, str]:
        """Debits take the lot that expires first; lots that expire together, by id."""
        return (self.expires_at, self.transaction_id)


@value_type
class Entry:
    """A new row of `coin_transactions`."""

    transaction_id: str
    student_id: str
    ledger_type: EntryType
    reference_id: str
    amount: int
    balance_after: int
    source_event_id: str


@dataclass(frozen=True, slots=True, order=True)
class Run:
    """Consecutive UTC days on which a student completed a course: a streak, named by its first
    day. A student's runs never touch (two that would are one)."""

    first: date
    last: date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def holds(self, day: date) -> bool:
        return self.first <= day <= self.last


@dataclass(frozen=True)
class StreakState:
    """What a batch needs to know about streaks: the runs of its students near its days, and
    the bonus results each course completion event earned earlier (repeated with its credit
    when the event is delivered again)."""

    runs: Mapping[str, tuple[Run, ...]] = field(default_factory=dict)
    bonuses: Mapping[tuple[str, str], tuple[OutgoingMessage, ...]] = field(default_factory=dict)


STREAK_BONUS: LedgerType = "streak_bonus"


@dataclass(frozen=True)
class CatalogState:
    """What a batch's redemptions by item need: the items they name (locked), and how many
    applied redemptions of each item each of their students has."""

    items: Mapping[str, CatalogItem] = field(default_factory=dict)
    redeemed: Mapping[tuple[str, str], int] = field(default_factory=dict)


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
    # Each student's runs as this batch leaves them, for the students whose runs it changed.
    runs: dict[str, tuple[Run, ...]] = field(default_factory=dict)
    # The streak bonuses this batch paid, by (student, the completion event that earned them).
    bonuses: dict[tuple[str, str], tuple[OutgoingMessage, ...]] = field(default_factory=dict)
    # How long a credit's coins last (COIN_EXPIRY_DAYS); None: they never expire.
    lifetime: timedelta | None = None
    # The open lots of the students this batch credits or debits, as it leaves them, earliest
    # first (those of a student who has none need not be loaded).
    lots: dict[str, list[Lot]] = field(default_factory=dict)
    # The lots this batch made or drew on, by transaction id: written back.
    lots_changed: dict[str, Lot] = field(default_factory=dict)
    # The catalog items whose stock its redemptions took, as they leave them, and the counts of
    # applied redemptions by (student, item) they raised.
    items: dict[str, CatalogItem] = field(default_factory=dict)
    redeemed: dict[tuple[str, str], int] = field(default_factory=dict)


def transaction_id(key: Key) -> str:
    return derived_id("coin-transaction", *key)


def decide_coins(
    commands: Iterable[CoinCommand],
    known: Mapping[Key, CoinDecision],
    wallets: Mapping[str, Wallet],
    now: datetime,
    answered: Answers | None = None,
    streaks: StreakState | None = None,
    *,
    lots: Mapping[str, Sequence[Lot]] | None = None,
    lifetime: timedelta | None = None,
    catalog: CatalogState | None = None,
) -> CoinPlan:
    """Apply `commands` in order to `wallets`, given the `known` decisions of earlier batches,
    the answers earlier batches gave by event (`answered`) and, under streak rules, the
    students' `streaks`. Credits last `lifetime` (None: for ever); debits draw on the open
    `lots` of their students first (needed for every debited wallet that has `lotted` coins).
    Redemptions by item are priced and checked against the `catalog`."""
    plan = CoinPlan(lifetime=lifetime)
    catalog = catalog or CatalogState()
    plan.lots = {student: sorted(found, key=_lot_order) for student, found in (lots or {}).items()}
    answered = answered or {}
    streaks = streaks or StreakState()
    for command in commands:
        wallet = plan.wallets.get(command.student_id) or wallets.get(command.student_id, Wallet())
        first_answer = plan.answers.get(command.event) or answered.get(command.event)
        if first_answer is not None:
            plan.messages.append(first_answer)
            plan.outcomes.append((command, "duplicate"))
            continue
        earlier = plan.decisions.get(command.key) or known.get(command.key)
        command = command.rewarded(wallet.lifetime_earned)
        refusal = None
        if command.item_id is not None and earlier is None:
            command, refusal = _priced(plan, command, catalog, now)
        if not command.authorized:
            # Answered every time and reserves nothing: a sender without the right must not
            # take a key away from the real request (CONTRACT section 3).
            _answer_once(plan, command, "not_authorized", wallet, now)
        elif earlier is not None:
            _replay(plan, command, earlier, wallet, now)
        elif refusal is not None:
            _refuse(plan, command, refusal, wallet, now)
        elif command.exceeds_limit or not wallet.can_move(command.amount):
            _refuse(plan, command, "limit_exceeded", wallet, now)
        elif wallet.balance + command.amount < 0:
            _refuse(plan, command, "insufficient_balance", wallet, now)
        else:
            _apply(plan, command, wallet, now)
            if command.item_id is not None:
                _take_item(plan, command.student_id, command.item_id, catalog)
            if command.reward is not None and command.reward.day is not None:
                _count_day(plan, command, command.reward, command.reward.day, streaks, now)
        if earlier is not None and command.ledger_type == "course_completion":
            # A course completion delivered again: the bonuses its first delivery earned go out
            # again with its credit (a crash may have come before they were published), whatever
            # the rules say now.
            earned = (command.student_id, command.source_event_id)
            plan.messages.extend(plan.bonuses.get(earned) or streaks.bonuses.get(earned, ()))
        if command.actor is not None and command.authorized:
            # A privileged request's verdict depends on time (its assertion's expiry, judged
            # when its record was appended): a new record of the same event, judged later, must
            # still get this answer, so it is kept by event too.
            plan.answers.setdefault(command.event, plan.messages[-1])
    return plan


def _priced(
    plan: CoinPlan, command: CoinCommand, catalog: CatalogState, now: datetime
) -> tuple[CoinCommand, CoinRejection | None]:
    """A redemption by item: at the item's price, or why the item refuses it."""
    assert command.item_id is not None  # noqa: S101 - only redemptions by item come here
    item = plan.items.get(command.item_id) or catalog.items.get(command.item_id)
    if item is None:
        return command, "item_unavailable"
    key = (command.student_id, command.item_id)
    redeemed = plan.redeemed.get(key, catalog.redeemed.get(key, 0))
    refusal = item.refusal(redeemed, command.requested_amount, now, command.price_cap)
    return replace(command, amount=-item.cost_coins), refusal


def _take_item(plan: CoinPlan, student: str, item_id: str, catalog: CatalogState) -> None:
    """One applied redemption of the item: one less in stock, one more for the student."""
    item = plan.items.get(item_id) or catalog.items[item_id]
    plan.items[item_id] = item.redeemed()
    key = (student, item_id)
    plan.redeemed[key] = plan.redeemed.get(key, catalog.redeemed.get(key, 0)) + 1


def _replay(
    plan: CoinPlan, command: CoinCommand, earlier: CoinDecision, wallet: Wallet, now: datetime
) -> None:
    if (earlier.requested_amount, earlier.item_id) == (command.requested_amount, command.item_id):
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
    plan.decisions[command.key] = CoinDecision(
        command.requested_amount, "rejected", message, command.item_id
    )
    plan.messages.append(message)
    plan.outcomes.append((command, "rejected"))


def _apply(
    plan: CoinPlan, command: CoinCommand, wallet: Wallet, now: datetime, *, counted: bool = True
) -> None:
    """Apply `command`; `counted`: it is an event's own effect (a streak bonus is not)."""
    entry_id = transaction_id(command.key)
    if command.amount < 0:
        after = wallet.moved(
            command.amount, -_draw(plan, wallet, command.student_id, -command.amount)
        )
    elif plan.lifetime is not None:
        lot = Lot(entry_id, command.student_id, command.amount, command.amount,
                  now + plan.lifetime, command.source_event_id)  # fmt: skip
        insort(plan.lots.setdefault(command.student_id, []), lot, key=_lot_order)
        plan.lots_changed[entry_id] = lot
        after = wallet.moved(command.amount, command.amount)
    else:
        after = wallet.moved(command.amount)
    entry = Entry(
        transaction_id=entry_id,
        student_id=command.student_id,
        ledger_type=command.ledger_type,
        reference_id=command.reference_id,
        amount=command.amount,
        balance_after=after.balance,
        source_event_id=command.source_event_id,
    )
    event_type = "coins.credited" if command.amount > 0 else "coins.debited"
    moved = coins_moved_json(
        transaction_id=entry.transaction_id,
        student_id=command.student_id,
        type=command.ledger_type,
        reference_id=command.reference_id,
        amount=abs(command.amount),
        balance_after=after.balance,
        source_event_id=command.source_event_id,
        rule=command.rule,
        item_id=command.item_id,
    )
    event_id = derived_id(event_type, *command.key)
    message = result_message_json(event_type, event_id, command.student_id, moved, now)
    plan.entries.append(entry)
    plan.wallets[command.student_id] = after
    plan.decisions[command.key] = CoinDecision(
        command.requested_amount, "applied", message, command.item_id
    )
    plan.messages.append(message)
    if counted:
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


def _draw(plan: CoinPlan, wallet: Wallet, student: str, amount: int) -> int:
    """Take up to `amount` coins from the student's open lots, the earliest expiring first, and
    return how many were taken; the rest comes from the coins that never expire."""
    open_lots = plan.lots.get(student, [])
    taken = 0
    while taken < amount and open_lots:
        lot = open_lots[0]
        take = min(lot.remaining, amount - taken)
        taken += take
        left = replace(lot, remaining=lot.remaining - take)
        plan.lots_changed[lot.transaction_id] = left
        if left.remaining:
            open_lots[0] = left
        else:
            open_lots.pop(0)
    if taken < min(amount, wallet.lotted) or amount - taken > wallet.balance - wallet.lotted:
        # The lots loaded do not hold the wallet's lotted coins: never guess which coins a
        # debit spends.
        raise LotsMissingError(student)
    return taken


class LotsMissingError(RuntimeError):
    """A debit found fewer coins in a wallet's lots than the wallet says they hold."""

    def __init__(self, student_id: str) -> None:
        super().__init__(f"the lots of wallet {student_id!r} do not add up to its lotted coins")


EXPIRY: EntryType = "expiry"


def expire_lots(due: Iterable[Lot], wallets: Mapping[str, Wallet], now: datetime) -> CoinPlan:
    """Expire the `due` lots (locked with their `wallets`): what is left of each is debited as
    an `expiry` entry whose reference is the lot's credit, and announced as `coins.expired`
    (CONTRACT section 10). The entry's key makes it once per lot."""
    plan = CoinPlan()
    for lot in sorted(due, key=lambda lot: (lot.student_id, lot.order)):
        if lot.remaining <= 0:
            continue
        wallet = plan.wallets.get(lot.student_id) or wallets[lot.student_id]
        after = wallet.moved(-lot.remaining, -lot.remaining)
        key: Key = (lot.student_id, EXPIRY, lot.transaction_id)
        entry = Entry(
            transaction_id=transaction_id(key),
            student_id=lot.student_id,
            ledger_type=EXPIRY,
            reference_id=lot.transaction_id,
            amount=-lot.remaining,
            balance_after=after.balance,
            source_event_id=lot.source_event_id,
        )
        expired = CoinsExpired(
            transaction_id=entry.transaction_id,
            student_id=lot.student_id,
            type=EXPIRY,
            reference_id=lot.transaction_id,
            amount=lot.remaining,
            balance_after=after.balance,
            expired_at=lot.expires_at,
        )
        event_id = derived_id("coins.expired", *key)
        plan.messages.append(
            result_message("coins.expired", event_id, lot.student_id, expired, now)
        )
        plan.entries.append(entry)
        plan.wallets[lot.student_id] = after
        plan.lots_changed[lot.transaction_id] = replace(lot, remaining=0)
    return plan


def _lot_order(lot: Lot) -> tuple[datetime, str]:
    return lot.order


def _count_day(
    plan: CoinPlan,
    command: CoinCommand,
    reward: CourseReward,
    day: date,
    streaks: StreakState,
    now: datetime,
) -> None:
    """Count the credited completion's `day` in the student's runs, and pay each streak length
    its run reaches for the first time (CONTRACT section 10: once per streak and length).

    A day counted already adds nothing. A run is named by its first day. A day that joins runs
    (or grows one at either end) makes one run, which is paid only the lengths beyond the
    longest of the runs it joined: those were paid when that run reached them. So a stretch of
    days pays each length once whatever order its days arrive in, but for lengths two runs both
    reached while they were apart."""
    student = command.student_id
    runs = plan.runs.get(student, streaks.runs.get(student, ()))
    if any(run.holds(day) for run in runs):
        return
    before = next((run for run in runs if run.last == day - _DAY), None)
    after = next((run for run in runs if run.first == day + _DAY), None)
    joined = Run(before.first if before else day, after.last if after else day)
    plan.runs[student] = tuple(sorted({*runs, joined} - {before, after}))
    had = max(before.days if before else 0, after.days if after else 0)  # paid already
    for streak in reward.rules.streaks:
        if not had < streak.days <= joined.days:
            continue
        bonus = CoinCommand(
            student_id=student,
            ledger_type=STREAK_BONUS,
            reference_id=f"streak:{joined.first.isoformat()}:{streak.days}",
            amount=streak.bonus,
            requested_amount=None,
            source_event_id=command.source_event_id,
            event_type=command.event_type,
            event_source=command.event_source,
        )
        wallet = plan.wallets.get(student, Wallet())
        if bonus.key in plan.decisions or not wallet.can_move(bonus.amount):
            continue  # paid already; or past the JSON-safe totals, which no bonus may take
        _apply(plan, bonus, wallet, now, counted=False)
        earned = (student, command.source_event_id)
        plan.bonuses[earned] = (*plan.bonuses.get(earned, ()), plan.messages[-1])


_DAY = timedelta(days=1)


def _rejection(command: CoinCommand, reason: CoinRejection, balance: int) -> CoinsRejected:
    return CoinsRejected(
        student_id=command.student_id,
        type=command.ledger_type,
        reference_id=command.reference_id,
        reason=reason,
        balance=balance,
        source_event_id=command.source_event_id,
    )
