"""The voucher catalog (CONTRACT section 10): items admins upsert by version, and what a
redemption by `item_id` must find in it.

Pure: the adapter locks and loads the items a batch names and the versions decided before,
`decide_catalog` works out what each upsert does, in order, and the adapter writes it back.
Redemptions by item are coin commands: `worker.core.coins` prices them with `refusal` and
`CatalogItem.redeemed`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from worker.core.answers import Answers, EventKey, Outcome
from worker.core.audit import AuditRecord
from worker.core.messages import OutgoingMessage
from worker.core.results import (
    CatalogItemRejected,
    CatalogItemUpdated,
    CatalogRejection,
    CoinRejection,
    derived_id,
    result_message,
)


@dataclass(frozen=True, slots=True)
class CatalogItem:
    """An item as stored: `stock` is what remains (None: unlimited)."""

    item_id: str
    version: int
    title: str
    cost_coins: int
    stock: int | None
    active_from: datetime
    active_until: datetime | None = None
    per_student_limit: int | None = None

    def on_offer(self, now: datetime) -> bool:
        """From `active_from` (included) until `active_until` (excluded)."""
        return self.active_from <= now and (self.active_until is None or now < self.active_until)

    def refusal(
        self, redeemed: int, stated: int | None, now: datetime, cap: int | None = None
    ) -> CoinRejection | None:
        """Why one more redemption of this item by a student who has `redeemed` it so many
        times, stating the price `stated` (None: none), is refused at `now`, where one request
        may move at most `cap` coins; None: it is not (the balance is the ledger's to judge)."""
        if not self.on_offer(now):
            return "item_unavailable"
        if stated is not None and stated != self.cost_coins:
            return "price_mismatch"
        if cap is not None and self.cost_coins > cap:
            return "limit_exceeded"
        if self.per_student_limit is not None and redeemed >= self.per_student_limit:
            return "limit_reached"
        if self.stock == 0:
            return "out_of_stock"
        return None

    def redeemed(self) -> CatalogItem:
        """The item after one redemption: one less in stock, unless unlimited."""
        return self if self.stock is None else replace(self, stock=self.stock - 1)


@dataclass(frozen=True, slots=True)
class UpsertItem:
    """An admin's `catalog.item.upserted`: create the item, or replace it by a higher version."""

    item: CatalogItem
    source_event_id: str
    event_type: str
    event_source: str
    actor: tuple[str, str]  # (id, role)
    authorized: bool = True
    unauthorized_because: str | None = None

    @property
    def event(self) -> EventKey:
        return (self.event_type, self.event_source, self.source_event_id)

    @property
    def digest(self) -> str:
        """What the request asks for, whoever sent it: a replay of the same version with the
        same fields repeats its result; the same version with other fields is stale."""
        fields = json.dumps(asdict(self.item), default=_instant, sort_keys=True).encode()
        return hashlib.sha256(fields).hexdigest()


def _instant(value: object) -> str:
    """A time as the instant it names: the same instant written with another offset is the
    same request."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"not a field of an item: {value!r}")


@dataclass(frozen=True, slots=True)
class VersionDecision:
    """An applied upsert of (item, version), kept forever: its replays repeat its result."""

    digest: str
    result: OutgoingMessage


@dataclass
class CatalogPlan:
    """What one batch's upserts change; the adapter persists it in the batch's transaction."""

    items: dict[str, CatalogItem] = field(default_factory=dict)
    versions: dict[tuple[str, int], VersionDecision] = field(default_factory=dict)
    messages: list[OutgoingMessage] = field(default_factory=list)
    outcomes: list[tuple[UpsertItem, Outcome]] = field(default_factory=list)
    answers: Answers = field(default_factory=dict)
    audits: list[AuditRecord] = field(default_factory=list)


def decide_catalog(
    commands: Iterable[UpsertItem],
    items: Mapping[str, CatalogItem],
    known: Mapping[tuple[str, int], VersionDecision],
    answered: Answers,
    now: datetime,
) -> CatalogPlan:
    """Apply the upserts in order to the (locked) stored `items`, given the versions decided
    earlier (`known`) and the answers kept by event (`answered`)."""
    plan = CatalogPlan()
    for command in commands:
        item = command.item
        first_answer = plan.answers.get(command.event) or answered.get(command.event)
        earlier = plan.versions.get((item.item_id, item.version)) or known.get(
            (item.item_id, item.version)
        )
        stored = plan.items.get(item.item_id) or items.get(item.item_id)
        if first_answer is not None:
            plan.messages.append(first_answer)
            plan.outcomes.append((command, "duplicate"))
        elif not command.authorized:
            _refuse(plan, command, "not_authorized", now)
        elif earlier is not None and earlier.digest == command.digest:
            plan.messages.append(earlier.result)
            plan.outcomes.append((command, "duplicate"))
        elif earlier is not None or (stored is not None and stored.version >= item.version):
            _refuse(plan, command, "stale_version", now)
        else:
            _apply(plan, command, now)
    return plan


def _apply(plan: CatalogPlan, command: UpsertItem, now: datetime) -> None:
    item = command.item
    updated = CatalogItemUpdated(**asdict(item))
    event_id = derived_id("catalog.item.updated", item.item_id, str(item.version))
    message = result_message("catalog.item.updated", event_id, item.item_id, updated, now)
    plan.items[item.item_id] = item
    plan.versions[(item.item_id, item.version)] = VersionDecision(command.digest, message)
    plan.messages.append(message)
    plan.outcomes.append((command, "applied"))
    actor_id, actor_role = command.actor
    plan.audits.append(
        AuditRecord(
            action=command.event_type,
            subject=item.item_id,
            reference_id=str(item.version),
            actor_id=actor_id,
            actor_role=actor_role,
            event_source=command.event_source,
            event_id=command.source_event_id,
            change=updated.model_dump(mode="json"),
        )
    )


def _refuse(
    plan: CatalogPlan, command: UpsertItem, reason: CatalogRejection, now: datetime
) -> None:
    """Refusals reserve nothing: each is kept by the event that got it, so its redelivery
    repeats it, and the version stays free for a proper request."""
    item_id = command.item.item_id
    rejected = CatalogItemRejected(
        item_id=item_id, reason=reason, source_event_id=command.source_event_id
    )
    event_id = derived_id(
        "catalog.item.rejected", item_id, str(command.item.version), reason,
        command.source_event_id,
    )  # fmt: skip
    message = result_message("catalog.item.rejected", event_id, item_id, rejected, now)
    plan.answers[command.event] = message
    plan.messages.append(message)
    plan.outcomes.append((command, "rejected"))
