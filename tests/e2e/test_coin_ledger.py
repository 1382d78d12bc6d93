"""The coin ledger through the real broker and a worker process (CONTRACT sections 1-4, 6)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from tests.e2e.conftest import RunningWorker, StartWorker
from tests.e2e.test_read_api import ok, token
from tests.events import (
    adjustment,
    catalog_item,
    completed,
    item_redemption,
    redemption,
    referral,
    send,
    structured,
)
from tests.kafka import read_all
from tests.support import eventually


async def ledger(url: str, student: str) -> tuple[int | None, list[tuple[str, str, int, int]]]:
    conn = await asyncpg.connect(url)
    try:
        balance = await conn.fetchval(
            "SELECT balance FROM coin_wallets WHERE student_id = $1", student
        )
        rows = await conn.fetch(
            "SELECT type, reference_id, amount, balance_after FROM coin_transactions"
            " WHERE student_id = $1 ORDER BY seq",
            student,
        )
        return balance, [tuple(r) for r in rows]
    finally:
        await conn.close()


def by_reference(events: list[dict], student: str) -> dict[str, dict]:  # type: ignore[type-arg]
    return {e["data"]["reference_id"]: e for e in events if e["subject"] == student}


async def test_every_coin_input_is_applied_and_answered(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "alice"
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s)
    await send(producer, w.prefix, "referral.succeeded", referral("ref-1", s), key=s)
    await send(producer, w.prefix, "referral.succeeded", referral("ref-2", s, 70), key=s)
    await send(producer, w.prefix, "coins.adjustment.requested", adjustment("adj-1", s, 30), key=s)
    credited = by_reference(await w.results("coins.credited", at_least=4), s)
    await send(producer, w.prefix, "coins.redemption.requested", redemption("red-1", s, 20), key=s)
    debited = by_reference(await w.results("coins.debited", at_least=1), s)

    assert {ref: e["data"]["amount"] for ref, e in credited.items()} == {
        "c-1": 100, "ref-1": 50, "ref-2": 70, "adj-1": 30,
    }  # fmt: skip
    assert debited["red-1"]["data"]["amount"] == 20
    assert debited["red-1"]["data"]["balance_after"] == 230
    for event in (*credited.values(), *debited.values()):
        assert event["source"] == "payment-worker"
        assert event["specversion"] == "1.0"
        assert event["datacontenttype"] == "application/json"
    balance, entries = await ledger(w.database_url, s)
    assert balance == 230
    assert sorted(e[:3] for e in entries) == [
        ("course_completion", "c-1", 100),
        ("manual_adjustment", "adj-1", 30),
        ("redemption", "red-1", -20),
        ("referral", "ref-1", 50),
        ("referral", "ref-2", 70),
    ]
    # Each entry's balance_after is the running sum of the entries before it, in ledger order.
    running = [sum(e[2] for e in entries[: i + 1]) for i in range(len(entries))]
    assert [e[3] for e in entries] == running


async def test_binary_mode_events_are_applied_like_structured_ones(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "bob"
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s, binary=True)
    await w.results("coins.credited", at_least=1)
    await send(
        producer, w.prefix, "coins.redemption.requested", redemption("r-1", s, 60),
        key=s, binary=True,
    )  # fmt: skip
    await w.results("coins.debited", at_least=1)
    assert await ledger(w.database_url, s) == (
        40,
        [("course_completion", "c-1", 100, 100), ("redemption", "r-1", -60, 40)],
    )


async def test_every_rejection_reason_leaves_the_ledger_as_it_was(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "carol"
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s)
    await w.results("coins.credited", at_least=1)
    await send(producer, w.prefix, "coins.redemption.requested", redemption("r-1", s, 500), key=s)
    await send(
        producer, w.prefix, "coins.adjustment.requested",
        adjustment("a-1", s, 1000, role="student"), key=s,
    )  # fmt: skip
    await send(producer, w.prefix, "coins.redemption.requested", redemption("r-2", s, 10), key=s)
    conflict_id = "conflicting-event"
    await send(
        producer, w.prefix, "coins.redemption.requested", redemption("r-2", s, 99),
        key=s, event_id=conflict_id,
    )  # fmt: skip

    rejected = await w.results("coins.rejected", at_least=3)
    reasons = {(e["data"]["reference_id"], e["data"]["reason"]) for e in rejected}
    assert reasons == {
        ("r-1", "insufficient_balance"),
        ("a-1", "not_authorized"),
        ("r-2", "idempotency_conflict"),
    }
    [conflict] = [e for e in rejected if e["data"]["reason"] == "idempotency_conflict"]
    assert conflict["data"]["source_event_id"] == conflict_id
    assert conflict["data"]["balance"] == 90
    assert await ledger(w.database_url, s) == (
        90,
        [("course_completion", "c-1", 100, 100), ("redemption", "r-2", -10, 90)],
    )


async def test_replay_with_new_event_ids_changes_nothing_and_repeats_the_result(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "dave"
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s, event_id="e1")
    [first] = await w.results("coins.credited", at_least=1)
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s, event_id="e2")
    await send(
        producer, w.prefix, "course.completed", completed(s, "c-1"), key=s, event_id="e3",
        binary=True,
    )  # fmt: skip

    answers = await w.results("coins.credited", at_least=3)
    assert answers == [first, first, first]
    assert first["data"]["source_event_id"] == "e1"
    assert await ledger(w.database_url, s) == (100, [("course_completion", "c-1", 100, 100)])


async def test_replayed_refusal_is_the_same_refusal_after_the_balance_grows(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "erin"
    await send(producer, w.prefix, "coins.redemption.requested", redemption("r-1", s, 50), key=s)
    [refusal] = await w.results("coins.rejected", at_least=1)
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s)
    await w.results("coins.credited", at_least=1)
    await send(producer, w.prefix, "coins.redemption.requested", redemption("r-1", s, 50), key=s)

    assert await w.results("coins.rejected", at_least=2) == [refusal, refusal]
    assert refusal["data"]["balance"] == 0
    assert (await ledger(w.database_url, s))[0] == 100


async def test_bad_input_is_dead_lettered_whole_and_the_partition_moves_on(
    coin_worker: RunningWorker, producer: AIOKafkaProducer
) -> None:
    w, s = coin_worker, "grace"
    topic = w.prefix + "coins.redemption.requested"
    bad_values = [
        b"not json at all",
        b"\xc3\x28 invalid utf-8",
        b'{"specversion": "1.0"}',
        structured(
            "course.completed", completed(s, "c-9")
        ),  # a course.completed on the redemption topic
        structured("coins.redemption.requested", {**redemption("r", s, 1), "amount": 2**53}),
        structured("coins.redemption.requested", redemption("r" * 129, s, 1)),
    ]
    for value in bad_values:
        await producer.send_and_wait(topic, value, key=s.encode(), headers=[("x-trace", b"t1")])
    await send(producer, w.prefix, "course.completed", completed(s, "c-1"), key=s)
    await w.results("coins.credited", at_least=1)
    await send(producer, w.prefix, "coins.redemption.requested", redemption("r-ok", s, 1), key=s)

    dead = await read_all(w.bootstrap, w.prefix + "payment-worker.dlq", at_least=len(bad_values))
    assert sorted(d.value for d in dead) == sorted(bad_values)
    for record in dead:
        headers = dict(record.headers)
        assert record.key == s.encode()
        assert headers["x-trace"] == b"t1"
        assert headers["dlq.source.topic"] == topic.encode()
        assert headers["dlq.error.class"] == b"BadInputError"
        for name in ("dlq.error.message", "dlq.source.partition", "dlq.source.offset"):
            assert headers[name]
        assert headers["dlq.failed.at"]

    async def redeemed() -> None:
        assert (await ledger(w.database_url, s))[0] == 99

    await eventually(redeemed)


async def test_course_rewards_follow_the_rules_file_by_course_and_student_tier(
    start_worker: StartWorker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    rules = tmp_path / "coin-rules.toml"
    rules.write_text(
        "version = 7\n[course_rewards]\ndefault = 100\nadvanced = 200\n"
        '[[student_tiers]]\nname = "silver"\nmin_lifetime_earned = 100\nmultiplier = 1.5\n'
    )
    w = await start_worker(COIN_RULES_FILE=str(rules))
    await send(producer, w.prefix, "course.completed", completed("ivy", "c-1"), key="ivy")
    advanced = {**completed("ivy", "c-2"), "course_tier": "advanced"}
    await send(producer, w.prefix, "course.completed", advanced, key="ivy")

    async def credited() -> list[dict]:  # type: ignore[type-arg]
        events = await w.results("coins.credited", at_least=2)
        assert len(events) == 2
        return [e["data"] for e in events]

    first, second = await eventually(credited, within=30)
    assert (first["reference_id"], first["amount"], first["rule"]) == (
        "c-1", 100,
        {"version": 7, "course_tier": None, "base": 100, "tier": None, "multiplier": 1.0},
    )  # fmt: skip
    # 100 coins earned before it: silver, so the advanced course's 200 is 300.
    assert (second["reference_id"], second["amount"], second["balance_after"]) == ("c-2", 300, 400)
    assert second["rule"] == {
        "version": 7, "course_tier": "advanced", "base": 200, "tier": "silver", "multiplier": 1.5,
    }  # fmt: skip
    assert await ledger(w.database_url, "ivy") == (
        400,
        [("course_completion", "c-1", 100, 100), ("course_completion", "c-2", 300, 400)],
    )


async def test_a_third_day_in_a_row_earns_the_streak_bonus_once(
    start_worker: StartWorker, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    rules = tmp_path / "coin-rules.toml"
    rules.write_text(
        "version = 1\n[course_rewards]\ndefault = 10\n[[streaks]]\ndays = 3\nbonus = 50\n"
    )
    w = await start_worker(COIN_RULES_FILE=str(rules))
    days = ["2026-11-24T23:30:00+05:30", "2026-11-25T09:00:00Z", "2026-11-26T20:00:00Z",
            "2026-11-26T21:00:00Z"]  # fmt: skip
    # The first is 18:00 UTC on the 24th; the last two share a day, which counts once.
    for n, completed_at in enumerate(days):
        data = {**completed("kai", f"c-{n}"), "completed_at": completed_at}
        await send(producer, w.prefix, "course.completed", data, key="kai")

    async def credited() -> list[tuple[str, str, int]]:
        events = await w.results("coins.credited", at_least=5)
        assert len(events) == 5
        return [(e["data"]["type"], e["data"]["reference_id"], e["data"]["amount"]) for e in events]

    assert await eventually(credited, within=30) == [
        ("course_completion", "c-0", 10), ("course_completion", "c-1", 10),
        ("course_completion", "c-2", 10), ("streak_bonus", "streak:2026-11-24:3", 50),
        ("course_completion", "c-3", 10),
    ]  # fmt: skip
    balance, _ = await ledger(w.database_url, "kai")
    assert balance == 90


async def test_coins_left_in_a_lot_expire_twenty_seconds_after_their_credit(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    # Long enough for the redemption and the wallet read to come first, short for the suite.
    w = await start_worker(COIN_EXPIRY_DAYS=str(20 / 86_400), COIN_EXPIRY_INTERVAL_SECONDS="1")
    sent = await send(producer, w.prefix, "course.completed", completed("eve", "c-1"), key="eve")
    await send(producer, w.prefix, "coins.redemption.requested", redemption("d-1", "eve", 30),
               key="eve")  # fmt: skip

    async def debited() -> dict:  # type: ignore[type-arg]
        [event] = await w.results("coins.debited", at_least=1)
        return event  # type: ignore[no-any-return]

    await eventually(debited, within=10)  # well inside the lot's 20 s, else a clear failure
    [credited] = await w.results("coins.credited", at_least=1)
    wallet = await ok(w, "/api/v1/wallets/eve", token("eve"))
    assert (wallet["balance"], wallet["expiring"]["amount"]) == (70, 70)
    expiring_at = datetime.fromisoformat(wallet["expiring"]["at"])
    credited_at = datetime.fromisoformat(credited["time"])
    assert timedelta(seconds=15) < expiring_at - credited_at < timedelta(seconds=25)
    # The lot keeps the partition its credit came from: that partition's owner expires it.
    conn = await asyncpg.connect(w.database_url)
    try:
        kept = await conn.fetchval("SELECT input_partition FROM coin_lots WHERE student_id = 'eve'")
    finally:
        await conn.close()
    assert kept == sent.partition

    async def expired() -> dict:  # type: ignore[type-arg]
        [event] = await w.results("coins.expired", at_least=1)
        return event  # type: ignore[no-any-return]

    event = await eventually(expired, within=60)
    assert event["subject"] == "eve"
    assert event["data"] == {
        "transaction_id": event["data"]["transaction_id"],
        "student_id": "eve",
        "type": "expiry",
        "reference_id": credited["data"]["transaction_id"],
        "amount": 70,
        "balance_after": 0,
        "expired_at": wallet["expiring"]["at"],
    }
    assert datetime.fromisoformat(event["time"]) >= expiring_at
    wallet = await ok(w, "/api/v1/wallets/eve", token("eve"))
    assert (wallet["balance"], wallet["expiring"]) == (0, None)
    assert await ledger(w.database_url, "eve") == (
        0,
        [
            ("course_completion", "c-1", 100, 100),
            ("redemption", "d-1", -30, 70),
            ("expiry", credited["data"]["transaction_id"], -70, 0),
        ],
    )


async def test_a_sold_out_catalog_item_is_refused_and_the_catalog_shows_what_is_left(
    start_worker: StartWorker, producer: AIOKafkaProducer
) -> None:
    w = await start_worker()
    await send(producer, w.prefix, "catalog.item.upserted", catalog_item("mug", cost=30, stock=1),
               key="mug")  # fmt: skip
    forged = catalog_item("mug", 2, stock=1000, role="student")
    await send(producer, w.prefix, "catalog.item.upserted", forged, key="mug")
    for student in ("ada", "bob"):
        await send(producer, w.prefix, "course.completed", completed(student, "c-1"), key=student)

    async def ready() -> None:
        assert len(await w.results("coins.credited", at_least=2)) == 2
        updated = await w.results("catalog.item.updated", at_least=1)
        assert [e["data"]["stock"] for e in updated] == [1]

    await eventually(ready, within=30)
    [rejected] = await w.results("catalog.item.rejected", at_least=1)
    assert rejected["data"]["reason"] == "not_authorized"
    for student in ("ada", "bob"):
        await send(producer, w.prefix, "coins.redemption.requested",
                   item_redemption(f"red-{student}", student, "mug"), key=student)  # fmt: skip

    async def answered() -> tuple[list[dict], list[dict]]:  # type: ignore[type-arg]
        debited = await w.results("coins.debited", at_least=1)
        refused = await w.results("coins.rejected", at_least=1)
        assert len(debited) == len(refused) == 1
        return debited, refused

    [debited], [refused] = await eventually(answered, within=30)
    assert (debited["data"]["item_id"], debited["data"]["amount"]) == ("mug", 30)
    assert refused["data"]["reason"] == "out_of_stock"
    assert refused["subject"] != debited["subject"]
    catalog = await ok(w, "/api/v1/catalog", token("anyone"))
    assert catalog == {
        "items": [
            {
                "item_id": "mug",
                "title": "voucher mug",
                "cost_coins": 30,
                "stock": 0,
                "active_from": "2026-01-01T00:00:00Z",
                "active_until": None,
                "per_student_limit": None,
            }
        ]
    }
    audit = await ok(w, "/api/v1/admin/audit", token("ops", "admin"))
    assert [(a["action"], a["subject"], a["reference_id"]) for a in audit["items"]] == [
        ("catalog.item.upserted", "mug", "1")
    ]
