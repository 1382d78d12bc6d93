"""The benchmark's input: a seeded, mixed event stream with outcomes known in advance.

Outcomes must not depend on the order in which the worker happens to read its seven topics, so
the workload is built for that:

- every student starts with a seeded balance (`SEED_COINS`, written before the run as a
  `manual_adjustment` entry). Affordable redemptions are small enough that the seed covers all
  of a student's; unaffordable ones ask for more than any student can ever hold. So each
  redemption's outcome is fixed whatever credits land before it.
- catalog items are seeded before the run too. Redemptions by `item_id` name the open voucher
  (never sold out: its stock ends at its start less the applied redemptions; its per-student
  limit counts each student's redemptions in their own order, which one partition keeps),
  the sold-out voucher (always `out_of_stock`), an unknown item (`item_unavailable`), or the
  open voucher at a wrong price (`price_mismatch`).
- webhooks report on payments seeded before the run (opened through the real adapter), never on
  payments requested during it, so none can arrive before its payment.
- a duplicate repeats an earlier event's data with a new event id, on the same topic and key,
  after the original: the worker must answer it with the original's result.

Every event is answered by exactly one result event, so the run is complete when the worker has
published as many results as it consumed events.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field

from worker.core.payments import STATUS_EVENTS
from worker.core.registry import BY_TYPE
from worker.core.results import derived_id
from worker.core.signatures import stripe_signature
from worker.gateways.mock import MockGateway

SEED_COINS = 1_000
REDEMPTION = 10  # affordable: the seed covers far more of them than any student gets
# More than any wallet here ever holds, and no more than one request may ask for (the default
# COIN_MAX_AMOUNT): refused as insufficient_balance, not limit_exceeded.
UNAFFORDABLE = 1_000_000
COURSE_REWARD = 100  # the worker's default COIN_REWARD_COURSE_COMPLETION
REFERRAL_REWARD = 50  # ... and COIN_REWARD_REFERRAL
REFERRAL_OVERRIDE = 70
# Catalog items seeded before the run (`bench.run.seed`), by id: (cost, stock, per-student limit).
OPEN_VOUCHER, GONE_VOUCHER, UNKNOWN_ITEM = "voucher-open", "voucher-gone", "voucher-unknown"
VOUCHER_LIMIT = 2
CATALOG: dict[str, tuple[int, int | None, int | None]] = {
    OPEN_VOUCHER: (REDEMPTION, 1_000_000, VOUCHER_LIMIT),
    GONE_VOUCHER: (REDEMPTION, 0, None),
}
# What a redemption names: an amount (and an item text), or a catalog item.
REDEEMS = (
    ("amount", 0.60),
    (OPEN_VOUCHER, 0.28),
    ("wrong price", 0.04),
    (GONE_VOUCHER, 0.05),
    (UNKNOWN_ITEM, 0.03),
)
WEBHOOK_SECRET = "whsec_bench_secret"  # noqa: S105 - the bench's own mock provider
TIME = "2026-11-26T09:00:00Z"
TIME_UNIX = 1795683600
GATEWAY = MockGateway("https://mock-gateway.invalid/checkout")

# Shares of the non-duplicate events, by type.
MIX = (
    ("course.completed", 0.45),
    ("referral.succeeded", 0.10),
    ("coins.redemption.requested", 0.20),
    ("payment.requested", 0.15),
    ("payment.webhook.received", 0.10),
)
# The workloads `scripts/bench --mix` offers: the mixed one above, and course completions alone.
MIXES: dict[str, tuple[tuple[str, float], ...]] = {
    "mixed": MIX,
    "courses": (("course.completed", 1.0),),
}
STATUSES = (("succeeded", 0.80), ("failed", 0.15), ("cancelled", 0.05))
if unknown := {kind for mix in MIXES.values() for kind, _ in mix} - set(BY_TYPE):
    raise ValueError(f"the bench's mix names event types the worker does not consume: {unknown}")


@dataclass(frozen=True, slots=True)
class Event:
    """One record to produce: its topic (= type), key, value, and the result it must get."""

    kind: str
    key: bytes
    value: bytes
    result_id: str
    duplicate: bool = False


@dataclass
class Workload:
    students: list[str]
    seeded_payments: dict[str, str]  # payment id -> student id, opened before the run
    events: list[Event] = field(default_factory=list)


@dataclass
class Expected:
    """What the ledger and payments must hold after `events` (and the seed) are applied."""

    balances: dict[str, int]
    entries: Counter[str]  # ledger type -> entries
    payment_statuses: Counter[str]
    results: int
    stock: dict[str, int | None]  # catalog item -> what remains


def generate(
    count: int,
    students: int,
    duplicates: float = 0.05,
    seed: int = 42,
    mix: tuple[tuple[str, float], ...] = MIX,
) -> Workload:
    """`count` events (about `duplicates` of them repeats) over `students` students, their
    types drawn with the shares in `mix`."""
    rng = random.Random(seed)
    ids = [f"s{n:06d}" for n in range(students)]
    originals = round(count * (1 - duplicates))
    # Enough seeded payments for every webhook the draw may ask for; the rest stay open.
    webhooks = round(originals * dict(mix).get("payment.webhook.received", 0.0) * 1.2) + 10
    seeded = {f"sp{n:07d}": rng.choice(ids) for n in range(webhooks)}
    workload = Workload(ids, seeded)
    seeded_order = iter(seeded.items())
    kinds, weights = zip(*mix, strict=True)
    statuses, status_weights = zip(*STATUSES, strict=True)
    made: list[tuple[str, dict[str, object], bytes, str]] = []
    vouchers: Counter[str] = Counter()  # applied redemptions of the open voucher, by student
    for n in range(originals):
        kind = rng.choices(kinds, weights)[0]
        student = rng.choice(ids)
        if kind == "payment.webhook.received":
            payment_id, student = next(seeded_order)
            status = rng.choices(statuses, status_weights)[0]
            ppid = mock_ppid(payment_id)
            data = mock_webhook(ppid, status, n)
            key, result = ppid.encode(), derived_id(STATUS_EVENTS[status], payment_id)
        else:
            data, result = _data(kind, student, n, rng, vouchers)
            key = student.encode()
        made.append((kind, data, key, result))
    # Each event gets a place; a repeat's place is after its original's (same topic and key:
    # the same partition, later), so the worker has always seen the original first.
    placed = [(float(n), Event(k, key, _envelope(k, key.decode(), d, rng), r))
              for n, (k, d, key, r) in enumerate(made)]  # fmt: skip
    for _ in range(count - originals):
        n = rng.randrange(originals)
        kind, data, key, result = made[n]
        repeat = Event(kind, key, _envelope(kind, key.decode(), data, rng), result, True)
        placed.append((rng.uniform(n + 0.5, originals), repeat))
    placed.sort(key=lambda pair: pair[0])
    workload.events = [event for _, event in placed]
    return workload


def expected(workload: Workload, events: list[Event]) -> Expected:
    """The ledger, payments and result count `events` must produce, from their values."""
    balances = dict.fromkeys(workload.students, SEED_COINS)
    entries: Counter[str] = Counter({"manual_adjustment": len(workload.students)})
    statuses: Counter[str] = Counter({"initiated": len(workload.seeded_payments)})
    vouchers: Counter[str] = Counter()
    for event in events:
        if event.duplicate:
            continue
        data = json.loads(event.value)["data"]
        ledger_type = BY_TYPE[event.kind].effect  # for a coin event: its ledger type
        if event.kind == "course.completed":
            balances[data["student_id"]] += COURSE_REWARD
            entries[ledger_type] += 1
        elif event.kind == "referral.succeeded":
            balances[data["referrer_id"]] += data.get("reward_coins") or REFERRAL_REWARD
            entries[ledger_type] += 1
        elif event.kind == "coins.redemption.requested":
            if cost := redemption_cost(data, vouchers):
                balances[data["student_id"]] -= cost
                entries[ledger_type] += 1
        elif event.kind == "payment.requested":
            statuses["initiated"] += 1
        elif event.kind == "payment.webhook.received":
            status = json.loads(data["body"])["type"].removeprefix("payment.")
            statuses["initiated"] -= 1
            statuses[status] += 1
    stock = {item: item_stock for item, (_, item_stock, _) in CATALOG.items()}
    stock[OPEN_VOUCHER] = (stock[OPEN_VOUCHER] or 0) - sum(vouchers.values())
    return Expected(balances, entries, statuses, results=len(events), stock=stock)


def redemption_cost(data: dict[str, object], vouchers: Counter[str]) -> int:
    """What a redemption (not a repeat) debits, in the order the student's redemptions are
    applied; 0 when it is refused. Counts applied redemptions of the open voucher in
    `vouchers`, by student."""
    item_id = data.get("item_id")
    if item_id is None:
        return REDEMPTION if data["amount"] == REDEMPTION else 0
    student = str(data["student_id"])
    if item_id != OPEN_VOUCHER or "amount" in data or vouchers[student] >= VOUCHER_LIMIT:
        return 0
    vouchers[student] += 1
    return CATALOG[OPEN_VOUCHER][0]


def mock_ppid(payment_id: str) -> str:
    return "mock_pay_" + derived_id("mock-session", payment_id)


def mock_webhook(ppid: str, status: str, n: int) -> dict[str, object]:
    body = json.dumps(
        {
            "id": f"ntf-{n}",
            "type": f"payment.{status}",
            "data": {"provider_payment_id": ppid, "amount": 49900, "currency": "INR"},
        }
    )
    signature = stripe_signature(body, WEBHOOK_SECRET, TIME_UNIX)
    return {"provider": "mock", "headers": {"Stripe-Signature": signature}, "body": body}


def _data(
    kind: str, student: str, n: int, rng: random.Random, vouchers: Counter[str]
) -> tuple[dict[str, object], str]:
    ledger_type = BY_TYPE[kind].effect  # for a coin event: its ledger type
    if kind == "course.completed":
        data: dict[str, object] = {
            "student_id": student, "course_id": f"c{n}", "completed_at": TIME,
        }  # fmt: skip
        return data, derived_id("coins.credited", student, ledger_type, f"c{n}")
    if kind == "referral.succeeded":
        data = {"referral_id": f"r{n}", "referrer_id": student, "referred_student_id": f"f{n}"}
        if rng.random() < 0.5:
            data["reward_coins"] = REFERRAL_OVERRIDE
        return data, derived_id("coins.credited", student, ledger_type, f"r{n}")
    if kind == "coins.redemption.requested":
        redeems, weights = zip(*REDEEMS, strict=True)
        names = rng.choices(redeems, weights)[0]
        data = {"redemption_id": f"d{n}", "student_id": student}
        if names == "amount":
            affordable = rng.random() < 0.8
            data |= {"amount": REDEMPTION if affordable else UNAFFORDABLE, "item": "mug"}
        elif names == "wrong price":
            data |= {"item_id": OPEN_VOUCHER, "amount": CATALOG[OPEN_VOUCHER][0] + 1}
        else:
            data["item_id"] = names
        result = "coins.debited" if redemption_cost(data, vouchers) else "coins.rejected"
        return data, derived_id(result, student, ledger_type, f"d{n}")
    data = {
        "payment_id": f"bp{n}", "student_id": student, "course_id": f"course-{n % 50}",
        "amount": 49900, "currency": "INR",
    }  # fmt: skip
    return data, derived_id("payment.session.created", f"bp{n}")


def _envelope(kind: str, subject: str, data: dict[str, object], rng: random.Random) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "source": "bench",
            "time": TIME,
            "subject": subject,
            "datacontenttype": "application/json",
            "data": data,
        },
        separators=(",", ":"),
    ).encode()
