"""The value types built for every event: frozen to the type checker, plain slotted dataclasses
at run time (worker.core.values)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from mypy import api as mypy_api

from worker.core.coins import CoinCommand, CoinDecision, Entry, Wallet
from worker.core.gateway import Session, SessionRequest
from worker.core.messages import OutgoingMessage
from worker.core.payments import (
    GatewayCall,
    IgnoreWebhook,
    OpenPayment,
    Payment,
    RefundDecision,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
    Transition,
)
from worker.core.records import InboundRecord
from worker.core.webhooks import Notification

ROOT = Path(__file__).resolve().parents[2]
AT = datetime(2026, 11, 29, tzinfo=UTC)
MESSAGE = OutgoingMessage("t", b"k", b"v")
NOTIFICATION = Notification("pp", "succeeded", 500, "INR", event_id="evt")

EXAMPLES = [
    OutgoingMessage("t", b"k", b"v", (("h", b"1"),)),
    InboundRecord("t", 1, 2, b"k", b"v", (("h", None),)),
    Wallet(5, 7, 2, 1),
    Entry("tx", "s", "course_completion", "c", 5, 5, "e"),
    CoinCommand("s", "course_completion", "c", 5, None, "e", "course.completed"),
    CoinDecision(None, "applied", MESSAGE),
    # The payments' (worker.core.payments, webhooks, gateway).
    Payment("p", "s", "c", 500, "INR", None, "mock", "pp", "u", AT, "initiated", None, "e", None),
    OpenPayment("p", "s", "c", 500, "INR", None, "e", "payment.requested", "src"),
    ReportStatus("mock", NOTIFICATION, "e", "payment.webhook.received", "pp", "src"),
    NOTIFICATION,
    RefuseWebhook("mock", "bad_signature", "d", "e", "payment.webhook.received", "pp", "src"),
    IgnoreWebhook("mock", "e", "payment.webhook.received"),
    RefundPayment("r", "p", "why", "a", True, "e", "payment.refund.requested", "p", "src"),
    Transition("p", "initiated", "succeeded", MESSAGE, "e", "evt"),
    RefundDecision("r", "p", "applied", "a", "why", MESSAGE, "e"),
    GatewayCall("session", "p", "p"),
    SessionRequest("p", "s", "c", 500, "INR", None, AT),
    Session("pp", "u", AT),
]


@pytest.mark.parametrize("value", EXAMPLES, ids=lambda v: type(v).__name__)
def test_a_value_compares_and_hashes_by_its_fields_and_has_slots_only(value: Any) -> None:
    same = dataclasses.replace(value)
    assert same == value
    assert same is not value
    assert hash(same) == hash(value)
    assert len({value, same}) == 1
    first = dataclasses.fields(value)[0]
    other = dataclasses.replace(value, **{first.name: 9 if first.type == "int" else "x"})
    assert other != value
    assert not hasattr(value, "__dict__")
    # Frozen to the type checker only (below): a frozen init costs six times as much.
    assert not type(value).__dataclass_params__.frozen


def test_the_type_checker_refuses_an_assignment_to_a_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the configuration's mypy_path is relative to it
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import Any\n"
        "from worker.core.coins import CoinCommand, CoinDecision, Entry, Wallet\n"
        "from worker.core.gateway import Session, SessionRequest\n"
        "from worker.core.messages import OutgoingMessage\n"
        "from worker.core.payments import (\n"
        "    GatewayCall, IgnoreWebhook, OpenPayment, Payment, RefundDecision, RefundPayment,\n"
        "    RefuseWebhook, ReportStatus, Transition,\n"
        ")\n"
        "from worker.core.records import InboundRecord\n"
        "from worker.core.webhooks import Notification\n"
        "from worker.pipeline import _Item\n"
        "def assign(\n"
        "    a: CoinCommand, b: CoinDecision, c: Entry, d: Wallet, e: OutgoingMessage,\n"
        "    f: InboundRecord, g: _Item, h: Any, i: Payment, j: OpenPayment, k: ReportStatus,\n"
        "    l: Notification, m: RefuseWebhook, n: IgnoreWebhook, o: RefundPayment,\n"
        "    p: Transition, q: RefundDecision, r: GatewayCall, s: SessionRequest, t: Session,\n"
        ") -> None:\n"
        "    a.amount = 1\n"
        "    b.item_id = None\n"
        "    c.amount = 1\n"
        "    d.balance = 1\n"
        "    e.topic = 'u'\n"
        "    f.offset = 1\n"
        "    g.command = h\n"
        "    i.status = 'failed'\n"
        "    j.amount = 1\n"
        "    k.subject = 'u'\n"
        "    l.amount = 1\n"
        "    m.detail = 'u'\n"
        "    n.event_type = 'u'\n"
        "    o.authorized = False\n"
        "    p.result = h\n"
        "    q.outcome = 'rejected'\n"
        "    r.payment_id = 'u'\n"
        "    s.amount = 1\n"
        "    t.payment_url = 'u'\n"
    )
    out, _, status = mypy_api.run(
        [
            "--config-file", str(ROOT / "pyproject.toml"),
            "--no-incremental",
            "--cache-dir", str(tmp_path / "cache"),
            str(probe),
        ]
    )  # fmt: skip
    assert status == 1, out
    assert out.count("is read-only") == 19, out
