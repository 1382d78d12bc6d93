"""The voucher catalog in the pure core: upserts by version, and redemptions by item."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.events import catalog_item
from worker.core.catalog import CatalogItem, UpsertItem, decide_catalog
from worker.core.coins import CatalogState, CoinCommand, Wallet, decide_coins
from worker.core.events import CatalogItemUpserted
from worker.core.results import derived_id

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ITEM = CatalogItem("v-10", 1, "10% off", 100, 5, NOW - timedelta(days=1), None, None)


def upsert(item: CatalogItem = ITEM, event: str = "e1", *, authorized: bool = True) -> UpsertItem:
    return UpsertItem(
        item, event, "catalog.item.upserted", "console", ("staff-1", "admin"), authorized
    )


def payload(value: bytes | None) -> dict[str, object]:
    assert value is not None
    found: dict[str, object] = json.loads(value)
    return found


# ---------------------------------------------------------------------- upserts


def test_an_upsert_of_a_new_item_creates_it_and_answers_with_the_item_as_stored() -> None:
    plan = decide_catalog([upsert()], {}, {}, {}, NOW)
    assert plan.items == {"v-10": ITEM}
    [message] = plan.messages
    event = payload(message.value)
    assert (message.topic, message.key, event["subject"]) == (
        "catalog.item.updated",
        b"v-10",
        "v-10",
    )
    assert event["id"] == derived_id("catalog.item.updated", "v-10", "1")
    assert event["data"] == {
        "item_id": "v-10", "version": 1, "title": "10% off", "cost_coins": 100, "stock": 5,
        "active_from": "2026-11-25T09:00:00Z", "active_until": None, "per_student_limit": None,
    }  # fmt: skip
    [audit] = plan.audits
    assert (audit.action, audit.subject, audit.reference_id) == (
        "catalog.item.upserted",
        "v-10",
        "1",
    )


def test_a_higher_version_replaces_the_item_and_its_stock() -> None:
    newer = replace(ITEM, version=2, cost_coins=150, stock=50)
    plan = decide_catalog([upsert(newer, "e2")], {"v-10": replace(ITEM, stock=0)}, {}, {}, NOW)
    assert plan.items == {"v-10": newer}
    assert [o for _, o in plan.outcomes] == ["applied"]


@pytest.mark.parametrize("stored_version", [1, 2])
def test_a_version_not_above_the_stored_one_is_stale_and_changes_nothing(
    stored_version: int,
) -> None:
    stored = replace(ITEM, version=stored_version)
    plan = decide_catalog(
        [upsert(replace(ITEM, title="other"), "e2")], {"v-10": stored}, {}, {}, NOW
    )
    assert plan.items == {}
    assert plan.versions == {}
    assert plan.audits == []
    [message] = plan.messages
    assert message.topic == "catalog.item.rejected"
    assert payload(message.value)["data"] == {
        "item_id": "v-10", "reason": "stale_version", "source_event_id": "e2",
    }  # fmt: skip
    # Kept by the event: its redelivery repeats it byte for byte.
    assert plan.answers == {("catalog.item.upserted", "console", "e2"): message}


def test_a_replay_of_an_applied_version_repeats_its_result_even_after_a_newer_one() -> None:
    first = decide_catalog([upsert()], {}, {}, {}, NOW)
    later = decide_catalog(
        [upsert(event="e-replay")],
        {"v-10": replace(ITEM, version=3)},
        first.versions,
        {},
        NOW + timedelta(hours=1),
    )
    assert later.messages == first.messages
    assert [o for _, o in later.outcomes] == ["duplicate"]
    assert later.items == {}


def test_the_same_version_with_other_fields_is_stale() -> None:
    first = decide_catalog([upsert()], {}, {}, {}, NOW)
    again = decide_catalog(
        [upsert(replace(ITEM, cost_coins=1), "e2")], {"v-10": ITEM}, first.versions, {}, NOW
    )
    assert payload(again.messages[0].value)["data"]["reason"] == "stale_version"  # type: ignore[index]


def test_an_upsert_by_a_non_admin_is_refused_and_reserves_nothing() -> None:
    refused = decide_catalog([upsert(event="e-x", authorized=False)], {}, {}, {}, NOW)
    assert payload(refused.messages[0].value)["data"]["reason"] == "not_authorized"  # type: ignore[index]
    assert refused.items == {}
    assert refused.versions == {}
    proper = decide_catalog([upsert(event="e-ok")], {}, {}, refused.answers, NOW)
    assert proper.items == {"v-10": ITEM}
    # The refused event delivered again repeats its refusal.
    again = decide_catalog([upsert(event="e-x")], {}, {}, refused.answers, NOW)
    assert again.messages == refused.messages


def test_two_versions_in_one_batch_apply_in_order_and_an_older_one_after_them_is_stale() -> None:
    v2, v3 = replace(ITEM, version=2), replace(ITEM, version=3, stock=1)
    plan = decide_catalog([upsert(v2, "a"), upsert(v3, "b"), upsert(ITEM, "c")], {}, {}, {}, NOW)
    assert plan.items == {"v-10": v3}
    assert [o for _, o in plan.outcomes] == ["applied", "applied", "rejected"]


# ---------------------------------------------------------------------- redemptions by item


def redeem(
    ref: str, item_id: str = "v-10", student: str = "s", stated: int | None = None
) -> CoinCommand:
    return CoinCommand(
        student, "redemption", ref, -(stated or 0), stated, f"ev-{ref}",
        "coins.redemption.requested", item_id=item_id,
    )  # fmt: skip


RICH = {"s": Wallet(10_000, 10_000, 0), "t": Wallet(10_000, 10_000, 0)}


def decide(
    commands: list[CoinCommand],
    item: CatalogItem = ITEM,
    redeemed: dict | None = None,  # type: ignore[type-arg]
):  # type: ignore[no-untyped-def]
    state = CatalogState({item.item_id: item}, redeemed or {})
    return decide_coins(commands, {}, RICH, NOW, catalog=state)


def reasons(plan) -> list[object]:  # type: ignore[no-untyped-def]
    return [payload(m.value)["data"].get("reason") for m in plan.messages]  # type: ignore[union-attr]


def test_a_redemption_by_item_costs_its_price_takes_one_from_stock_and_names_the_item() -> None:
    plan = decide([redeem("r1")])
    [entry] = plan.entries
    assert entry.amount == -100
    assert plan.items == {"v-10": replace(ITEM, stock=4)}
    assert plan.redeemed == {("s", "v-10"): 1}
    data = payload(plan.messages[0].value)["data"]
    assert (data["type"], data["amount"], data["item_id"]) == ("redemption", 100, "v-10")  # type: ignore[index]


def test_a_stated_amount_must_be_the_price() -> None:
    assert reasons(decide([redeem("r1", stated=100)])) == [None]
    plan = decide([redeem("r1", stated=99)])
    assert reasons(plan) == ["price_mismatch"]
    assert plan.items == {}
    assert plan.entries == []


@pytest.mark.parametrize(
    "item",
    [
        replace(ITEM, active_from=NOW + timedelta(seconds=1)),  # not yet
        replace(ITEM, active_until=NOW),  # over: active_until is excluded
    ],
)
def test_an_item_not_on_offer_is_unavailable(item: CatalogItem) -> None:
    assert reasons(decide([redeem("r1")], item)) == ["item_unavailable"]


def test_an_item_priced_above_what_one_request_may_move_is_refused_as_limit_exceeded() -> None:
    capped = replace(redeem("r1"), price_cap=99)
    assert reasons(decide([capped])) == ["limit_exceeded"]
    assert reasons(decide([replace(redeem("r1"), price_cap=100)])) == [None]


def test_an_unknown_item_is_unavailable() -> None:
    assert reasons(decide([redeem("r1", item_id="nope")])) == ["item_unavailable"]


def test_the_last_one_in_stock_goes_to_the_first_and_the_next_is_out_of_stock() -> None:
    plan = decide([redeem("r1"), redeem("r2", student="t")], replace(ITEM, stock=1))
    assert reasons(plan) == [None, "out_of_stock"]
    assert plan.items["v-10"].stock == 0


def test_a_student_at_the_per_student_limit_is_refused() -> None:
    item = replace(ITEM, per_student_limit=2)
    plan = decide([redeem("r1"), redeem("r2"), redeem("r3"), redeem("r4", student="t")], item,
                  {("s", "v-10"): 1})  # fmt: skip
    assert reasons(plan) == [None, "limit_reached", "limit_reached", None]
    assert plan.redeemed == {("s", "v-10"): 2, ("t", "v-10"): 1}


def test_a_redemption_beyond_the_balance_takes_no_stock() -> None:
    state = CatalogState({"v-10": ITEM})
    plan = decide_coins([redeem("r1")], {}, {"s": Wallet(99, 99, 0)}, NOW, catalog=state)
    assert reasons(plan) == ["insufficient_balance"]
    assert plan.items == {}
    assert plan.redeemed == {}


def test_a_refusal_by_item_is_remembered_and_a_replay_naming_another_item_conflicts() -> None:
    first = decide([redeem("r1")], replace(ITEM, stock=0))
    assert reasons(first) == ["out_of_stock"]
    restocked = CatalogState({"v-10": ITEM})
    again = decide_coins([redeem("r1")], first.decisions, RICH, NOW, catalog=restocked)
    assert again.messages == first.messages  # still out of stock: a refusal stays a refusal
    other = decide_coins(
        [redeem("r1", item_id="v-20")], first.decisions, RICH, NOW, catalog=restocked
    )
    assert reasons(other) == ["idempotency_conflict"]


@given(
    stock=st.one_of(st.none(), st.integers(0, 6)),
    limit=st.one_of(st.none(), st.integers(1, 3)),
    batches=st.lists(
        st.lists(st.tuples(st.sampled_from(["s", "t", "u"]), st.integers(0, 9)), max_size=6),
        max_size=5,
    ),
)
def test_stock_never_goes_below_zero_and_is_the_initial_stock_less_applied_redemptions(
    stock: int | None, limit: int | None, batches: list[list[tuple[str, int]]]
) -> None:
    item = replace(ITEM, stock=stock, per_student_limit=limit)
    state = CatalogState({"v-10": item})
    known: dict = {}  # type: ignore[type-arg]
    wallets = {s: Wallet(250, 250, 0) for s in "stu"}
    applied: dict[str, int] = {}
    for batch in batches:
        commands = [redeem(f"r{n}", student=student) for student, n in batch]
        plan = decide_coins(commands, known, wallets, NOW, catalog=state)
        known.update(plan.decisions)
        wallets.update(plan.wallets)
        state = CatalogState({**state.items, **plan.items}, {**state.redeemed, **plan.redeemed})
        for entry in plan.entries:
            applied[entry.student_id] = applied.get(entry.student_id, 0) + 1
    left = state.items["v-10"].stock
    total = sum(applied.values())
    if stock is not None:
        assert left == stock - total >= 0
    for student, count in applied.items():
        assert state.redeemed[(student, "v-10")] == count
        assert limit is None or count <= limit
        assert wallets[student].balance == 250 - 100 * count >= 0


def test_the_same_instant_written_with_another_offset_is_the_same_version() -> None:
    first = decide_catalog([upsert()], {}, {}, {}, NOW)
    shifted = replace(ITEM, active_from=ITEM.active_from.astimezone(timezone(timedelta(hours=5))))
    again = decide_catalog([upsert(shifted, "e2")], {"v-10": ITEM}, first.versions, {}, NOW)
    assert [o for _, o in again.outcomes] == ["duplicate"]


@pytest.mark.parametrize(
    ("name", "edge"),
    [("active_from", "0001-01-01T00:00:00+05:00"), ("active_until", "9999-12-31T23:00:00-05:00")],
)
def test_an_item_time_utc_cannot_hold_is_bad_input(name: str, edge: str) -> None:
    with pytest.raises(ValidationError, match="UTC cannot hold"):
        CatalogItemUpserted.model_validate(catalog_item("v-1") | {name: edge})


def test_item_times_are_kept_in_utc() -> None:
    data = catalog_item("v-1") | {"active_from": "2026-01-01T05:30:00+05:30"}
    assert CatalogItemUpserted.model_validate(data).active_from == datetime(2026, 1, 1, tzinfo=UTC)
