"""The payment state machine (CONTRACT section 5) and what a batch of payment commands does.

Pure: the adapter loads the payments a batch touches (locked), their earlier results and refund
decisions; `decide_payments` works out every change and result in order; the adapter writes them
back in a few set-based statements. Nothing here waits for a provider: a new payment and an
accepted refund become gateway calls (`PaymentPlan.calls`), made after the batch's commit, and
`settle_session` / `settle_refund` turn the provider's answer into the next change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from worker.core import money
from worker.core.answers import Answers, EventKey, Outcome
from worker.core.audit import AuditRecord
from worker.core.gateway import (
    InstantGateway,
    RefundReceipt,
    RefundRequest,
    Refused,
    Session,
    SessionRequest,
)
from worker.core.messages import OutgoingMessage
from worker.core.results import (
    OutboundData,
    PaymentCancelled,
    PaymentConfirmed,
    PaymentExpired,
    PaymentFailed,
    PaymentRefunded,
    PaymentRejected,
    PaymentRejection,
    PaymentSessionCreated,
    PaymentStatus,
    derived_id,
    result_message,
)
from worker.core.signatures import SignatureRefusal
from worker.core.types import Provider
from worker.core.values import value_type
from worker.core.webhooks import Notification

Status = PaymentStatus
Verdict = Literal["apply", "repeat", "refuse"]

# Every move a payment may make. The provider is authoritative about money: a verified success
# moves a failed, cancelled or expired payment to succeeded; only a refund leaves succeeded.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    "initiated": frozenset({"succeeded", "failed", "cancelled", "expired"}),
    "succeeded": frozenset({"refunded"}),
    "failed": frozenset({"succeeded"}),
    "cancelled": frozenset({"succeeded"}),
    "expired": frozenset({"succeeded"}),
    "refunded": frozenset(),
}

# The result event that announces each status.
STATUS_EVENTS: Mapping[Status, str] = {
    "initiated": "payment.session.created",
    "succeeded": "payment.confirmed",
    "failed": "payment.failed",
    "cancelled": "payment.cancelled",
    "expired": "payment.expired",
    "refunded": "payment.refunded",
}

EXPIRED_REASON = "the payment session expired unpaid"
_DEFAULT_REASONS: Mapping[Status, str] = {
    "failed": "the provider reported the payment failed",
    "cancelled": "the provider reported the payment cancelled",
    "expired": "the provider expired the payment session unpaid",
}
ATTEMPT_FAILED_REASON = "a payment attempt failed; the student may try again"


def verdict(current: Status, target: Status) -> Verdict:
    """`repeat` when the payment already has `target`; `apply` when the move is allowed."""
    if current == target:
        return "repeat"
    return "apply" if target in TRANSITIONS[current] else "refuse"


def is_late_success(current: Status, target: Status) -> bool:
    """A verified success for a payment that had already failed, been cancelled or expired."""
    return target == "succeeded" and current in ("failed", "cancelled", "expired")


@value_type
class Payment:
    """A row of `payments`, as far as the rules need it."""

    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None
    provider: Provider
    # None until the provider has opened the payment's session (or when it refused to).
    provider_payment_id: str | None
    payment_url: str | None
    expires_at: datetime
    status: Status
    status_reason: str | None
    source_event_id: str
    # The provider's id of the captured money, from a success webhook (refunds name it).
    captured_id: str | None


@value_type
class OpenPayment:
    """`payment.requested`."""

    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None
    source_event_id: str
    event_type: str
    event_source: str
    # The provider the request names; None: the worker's PAYMENT_PROVIDER.
    provider: Provider | None = None

    def same_request(self, payment: Payment) -> bool:
        """CONTRACT section 3: a replay must name the same amount, currency, student, course."""
        return (self.student_id, self.course_id, self.amount, self.currency) == (
            payment.student_id,
            payment.course_id,
            payment.amount,
            payment.currency,
        )


@value_type
class ReportStatus:
    """A verified webhook reporting a status."""

    provider: Provider
    notification: Notification
    source_event_id: str
    event_type: str
    subject: str
    event_source: str


@value_type
class RefuseWebhook:
    """A webhook whose signature does not hold: refused before its body is read."""

    provider: Provider
    reason: SignatureRefusal
    detail: str
    source_event_id: str
    event_type: str
    subject: str
    event_source: str


@value_type
class IgnoreWebhook:
    """A verified webhook of an event type the worker does not act on."""

    provider: Provider
    source_event_id: str
    event_type: str


@value_type
class RefundPayment:
    """`payment.refund.requested`."""

    refund_id: str
    payment_id: str
    reason: str
    actor_id: str
    authorized: bool
    source_event_id: str
    event_type: str
    subject: str
    event_source: str
    actor_role: str = ""
    # Why an unauthorized refund is refused, for the log (never in the answer).
    unauthorized_because: str | None = None


PaymentCommand = OpenPayment | ReportStatus | RefuseWebhook | IgnoreWebhook | RefundPayment
# The commands that get an answer (an ignored webhook gets none).
AnsweredCommand = OpenPayment | ReportStatus | RefuseWebhook | RefundPayment


def event_of(command: AnsweredCommand) -> EventKey:
    """The consumed event behind `command`, as answers are kept by."""
    return (command.event_type, command.event_source, command.source_event_id)


@value_type
class Transition:
    """A status a payment reached, with the result that announced it (kept for repeats)."""

    payment_id: str
    from_status: Status | None
    to_status: Status
    result: OutgoingMessage
    source_event_id: str | None
    # The provider's own id of the webhook that caused it, if one did and it has one.
    provider_event_id: str | None = None


RefundOutcome = Literal["pending", "applied", "rejected"]


@value_type
class RefundDecision:
    """What was decided for a refund id, kept forever: a replay repeats its result. A refund
    is `pending` (no result yet) from its acceptance until the provider has answered."""

    refund_id: str
    payment_id: str
    outcome: RefundOutcome
    actor_id: str
    reason: str
    result: OutgoingMessage | None
    source_event_id: str | None = None


@value_type
class GatewayCall:
    """A provider call a decision asks for: open `payment_id`'s session (`reference_id` is the
    payment id) or make the refund `reference_id` of it."""

    kind: Literal["session", "refund"]
    reference_id: str
    payment_id: str


@dataclass(frozen=True, slots=True)
class PaymentDefaults:
    """What configuration decides for a new payment: its provider and how long it stays open;
    and the providers whose answers are computed in the batch (the mock) rather than asked."""

    provider: Provider
    session_ttl: timedelta
    instant: Mapping[Provider, InstantGateway] = field(default_factory=dict)


@dataclass(frozen=True)
class Known:
    """What earlier batches decided, for the payments and refunds a batch names."""

    payments: Mapping[str, Payment] = field(default_factory=dict)
    results: Mapping[tuple[str, Status], OutgoingMessage] = field(default_factory=dict)
    refunds: Mapping[str, RefundDecision] = field(default_factory=dict)
    # The payments (of those above) with a refund in flight: no second refund may start.
    refunding: frozenset[str] = frozenset()
    # The result each applied webhook event got, by (CloudEvent id, payment id): a redelivery
    # repeats it even when the payment has moved on since (say, to a late success).
    webhooks: Mapping[tuple[str, str], OutgoingMessage] = field(default_factory=dict)
    # Every other answer, by the event that got it (see `worker.core.answers`).
    answered: Mapping[EventKey, OutgoingMessage] = field(default_factory=dict)
    # The result each applied webhook got, by (provider, the provider's event id): a provider's
    # retry, in a new CloudEvent, repeats it and changes nothing (CONTRACT section 8).
    # By (provider, the provider's event id, the payment it moved).
    provider_events: Mapping[tuple[Provider, str, str], OutgoingMessage] = field(
        default_factory=dict
    )


@dataclass
class PaymentPlan:
    """Everything one batch (or one expiry sweep) changes; persisted in one transaction."""

    created: dict[str, Payment] = field(default_factory=dict)
    changed: dict[str, Payment] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    # New refund decisions, and pending ones the provider has answered.
    refunds: dict[str, RefundDecision] = field(default_factory=dict)
    refunds_settled: dict[str, RefundDecision] = field(default_factory=dict)
    calls: list[GatewayCall] = field(default_factory=list)
    # Replays of requests whose call is still pending, by call: each is answered when it is.
    owed: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: list[OutgoingMessage] = field(default_factory=list)
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    webhook_refusals: list[tuple[Provider, PaymentRejection]] = field(default_factory=list)
    late_successes: list[Transition] = field(default_factory=list)
    answers: Answers = field(default_factory=dict)
    # Commands found to be bad input only once the database was read: dead-lettered, not
    # answered (see `_Book.refund`).
    bad_input: list[tuple[PaymentCommand, str]] = field(default_factory=list)
    # The honoured privileged requests (refunds accepted), for the audit trail.
    audits: list[AuditRecord] = field(default_factory=list)


def decide_payments(
    commands: Iterable[PaymentCommand], known: Known, defaults: PaymentDefaults, now: datetime
) -> PaymentPlan:
    """Apply `commands` in order."""
    book = _Book(known, now, defaults)
    for command in commands:
        first_answer = None if isinstance(command, IgnoreWebhook) else book.answered(command)
        if first_answer is not None:
            book.plan.messages.append(first_answer)
            outcome: Outcome = "duplicate"
        else:
            outcome = book.decide(command)
        if outcome != "bad_input":
            book.plan.outcomes.append((command.event_type, outcome))
    return book.plan


def expire_payments(payments: Iterable[Payment], now: datetime) -> PaymentPlan:
    """Move every `initiated` payment whose `expires_at` has passed to `expired`."""
    book = _Book(Known(), now)
    for payment in payments:
        book.current[payment.payment_id] = payment
        if verdict(payment.status, "expired") == "apply" and payment.expires_at <= now:
            book.move(payment, "expired", EXPIRED_REASON, None)
    return book.plan


def settle_session(payment: Payment, answer: Session | Refused, now: datetime) -> PaymentPlan:
    """What the provider's answer to opening `payment`'s session changes.

    An opened session is kept whatever the payment's status by now (a late webhook must still
    find the payment), but announced only while the payment is open. A refusal fails the
    payment with the provider's reason."""
    book = _Book(Known(payments={payment.payment_id: payment}), now)
    if payment.provider_payment_id is not None:
        return book.plan  # settled before (a repeated call)
    if isinstance(answer, Refused):
        if payment.status == "initiated":
            book.move(payment, "failed", answer.reason, None)
        return book.plan
    opened = replace(
        payment,
        provider_payment_id=answer.provider_payment_id,
        payment_url=answer.payment_url,
        expires_at=answer.expires_at if payment.status == "initiated" else payment.expires_at,
    )
    book.plan.changed[payment.payment_id] = opened
    if payment.status == "initiated":
        book.record(None, opened, payment.source_event_id)
    return book.plan


def settle_refund(
    payment: Payment,
    refund_id: str,
    decision: RefundDecision,
    answer: RefundReceipt | Refused,
    now: datetime,
) -> PaymentPlan:
    """What the provider's answer to the pending refund `refund_id` of `payment` changes: the
    payment is refunded, or the refund is rejected with the provider's reason."""
    book = _Book(Known(payments={payment.payment_id: payment}), now)
    if decision.outcome != "pending":
        return book.plan  # settled before (a repeated call)
    if isinstance(answer, Refused):
        event_id = derived_id("payment.rejected", "refund", refund_id)
        source = decision.source_event_id or refund_id
        message = book.reject(
            event_id, payment.payment_id, "provider_refused", source, payment.student_id,
            detail=answer.reason,
        )  # fmt: skip
        book.plan.refunds_settled[refund_id] = replace(decision, outcome="rejected", result=message)
        return book.plan
    if verdict(payment.status, "refunded") != "apply":
        # Only a refund leaves `succeeded`, and one refund per payment is in flight at a time.
        raise ValueError(
            f"refund {refund_id!r} was made, but payment {payment.payment_id!r} is "
            f"{payment.status}, not succeeded"
        )
    transition = book.move(payment, "refunded", decision.reason, decision.source_event_id)
    book.plan.refunds_settled[refund_id] = replace(
        decision, outcome="applied", result=transition.result
    )
    return book.plan


class _Book:
    """The batch's view of payments: what was known, updated by each decision in turn."""

    def __init__(
        self, known: Known, now: datetime, defaults: PaymentDefaults | None = None
    ) -> None:
        self.plan = PaymentPlan()
        self.now = now
        self.known = known
        self.defaults = defaults
        self.current: dict[str, Payment] = dict(known.payments)
        self.by_provider = {
            (p.provider, p.provider_payment_id): p.payment_id
            for p in known.payments.values()
            if p.provider_payment_id is not None
        }
        self.refunding = set(known.refunding)
        self.results: dict[tuple[str, Status], OutgoingMessage] = dict(known.results)
        self.webhooks: dict[tuple[str, str], OutgoingMessage] = dict(known.webhooks)
        self.provider_events: dict[tuple[Provider, str, str], OutgoingMessage] = dict(
            known.provider_events
        )

    def _applied_by(self, source_event_id: str) -> OutgoingMessage | None:
        """The result of the move a webhook event caused, if it caused one."""
        for (event_id, _), result in self.webhooks.items():
            if event_id == source_event_id:
                return result
        return None

    def answered(self, command: AnsweredCommand) -> OutgoingMessage | None:
        """The first answer of a redelivered event, when no decision repeats it by itself."""
        event = event_of(command)
        return self.plan.answers.get(event) or self.known.answered.get(event)

    def decide(self, command: PaymentCommand) -> Outcome:
        match command:
            case OpenPayment():
                return self.open(command)
            case ReportStatus():
                return self.report(command)
            case RefuseWebhook():
                applied = self._applied_by(command.source_event_id)
                if applied is not None:
                    # This event moved a payment when it first came; a new record of it is
                    # judged later (its append time) and refused, but its first answer stands.
                    self.plan.messages.append(applied)
                    return "duplicate"
                self.reject_webhook(command, command.reason, None, command.subject)
                return "rejected"
            case IgnoreWebhook():
                return "ignored"
            case RefundPayment():
                return self.refund(command)

    def open(self, command: OpenPayment) -> Outcome:
        payment = self.current.get(command.payment_id)
        if payment is not None:
            if command.same_request(payment):
                # The first answer: the session. Without one, the payment's status (the
                # provider's refusal, an expiry before the session opened); while the provider
                # has not answered yet, the answer is owed and published when it comes.
                first = self.results.get((payment.payment_id, "initiated"))
                if first is None and payment.status != "initiated":
                    first = self.results.get((payment.payment_id, payment.status))
                if first is not None:
                    self.plan.messages.append(first)
                else:
                    self.plan.owed[("session", payment.payment_id)] += 1
                return "duplicate"
            # The key's first part is a fixed word of the derived result id, not the event type:
            # it must never change, or replays would get new ids.
            self._conflict(
                command, ("payment.requested", command.payment_id), command.payment_id,
                command.student_id,
            )  # fmt: skip
            return "rejected"
        if self.defaults is None:
            raise ValueError("a new payment needs the configured defaults")
        payment = Payment(
            payment_id=command.payment_id,
            student_id=command.student_id,
            course_id=command.course_id,
            amount=command.amount,
            currency=command.currency,
            description=command.description,
            provider=command.provider or self.defaults.provider,
            provider_payment_id=None,
            payment_url=None,
            expires_at=self.now + self.defaults.session_ttl,
            status="initiated",
            status_reason=None,
            source_event_id=command.source_event_id,
            captured_id=None,
        )
        instant = self.defaults.instant.get(payment.provider)
        if instant is None:
            self.plan.created[payment.payment_id] = payment
            self.current[payment.payment_id] = payment
            self.plan.calls.append(GatewayCall("session", payment.payment_id, payment.payment_id))
            return "applied"
        session = instant.session_now(session_request(payment))
        payment = replace(
            payment,
            provider_payment_id=session.provider_payment_id,
            payment_url=session.payment_url,
            expires_at=session.expires_at,
        )
        self.plan.created[payment.payment_id] = payment
        self.by_provider[(payment.provider, session.provider_payment_id)] = payment.payment_id
        self.record(None, payment, command.source_event_id)
        return "applied"

    def report(self, command: ReportStatus) -> Outcome:
        notification = command.notification
        payment = self.find(command.provider, notification)
        if payment is None:
            self.reject_webhook(command, "unknown_payment", None, command.subject)
            return "rejected"
        provider_event = (command.provider, notification.event_id or "", payment.payment_id)
        sent_before = self.provider_events.get(provider_event)
        if sent_before is not None:
            # The provider sent this notification again (its retry, or a replay of captured
            # bytes in a new CloudEvent): the first result, and nothing changes. (The same id
            # for another payment is not a retry: a provider's ids are unique, a forger's not.)
            self.plan.messages.append(sent_before)
            self._answer(command, sent_before)  # this event's own answer, should it come again
            return "duplicate"
        applied_before = self.webhooks.get((command.source_event_id, payment.payment_id))
        if applied_before is not None:
            self.plan.messages.append(applied_before)
            return "duplicate"
        if not _same_money(command.provider, notification, payment):
            self.reject_webhook(command, "amount_mismatch", payment.payment_id, payment.student_id)
            return "rejected"
        target = notification.status
        if target == "attempt_failed":
            # The student may pay again: the payment stays open, with the reason on record.
            if payment.status != "initiated":
                return "ignored"
            noted = replace(payment, status_reason=notification.reason or ATTEMPT_FAILED_REASON)
            self.current[payment.payment_id] = noted
            self.keep(noted)
            return "applied"
        match verdict(payment.status, target):
            case "repeat":
                repeated = self.results[(payment.payment_id, target)]
                self.plan.messages.append(repeated)
                self._answer(command, repeated)
                return "duplicate"
            case "refuse":
                self.reject_webhook(
                    command, "invalid_transition", payment.payment_id, payment.student_id
                )
                return "rejected"
        reason = None if target == "succeeded" else notification.reason or _DEFAULT_REASONS[target]
        if notification.captured_id is not None:
            payment = replace(payment, captured_id=notification.captured_id)
        transition = self.move(
            payment, target, reason, command.source_event_id, notification.event_id
        )
        self.webhooks[(command.source_event_id, payment.payment_id)] = transition.result
        if notification.event_id is not None:
            self.provider_events[provider_event] = transition.result
        if is_late_success(payment.status, target):
            self.plan.late_successes.append(transition)
        return "applied"

    def find(self, provider: Provider, notification: Notification) -> Payment | None:
        """The payment a webhook reports on: by the provider's id for it, else by the payment id
        the worker put in the provider's metadata; never a payment of another provider.

        A metadata match must not contradict what is known: a session event only for a payment
        whose session is not known yet or is that session; a payment-attempt event only for a
        payment whose captured money is not known yet or is that money. (Another object naming
        the payment, say a second session opened elsewhere, moves nothing: `unknown_payment`.)"""
        reported = notification.provider_payment_id
        payment_id = self.by_provider.get((provider, reported))
        if payment_id is not None:
            return self.current[payment_id]
        payment = self.current.get(notification.payment_id or "")
        if payment is None or payment.provider != provider:
            return None
        known = payment.provider_payment_id if notification.names == "session" else None
        if notification.names == "payment":
            known = payment.captured_id
        return payment if known in (None, reported) else None

    def refund(self, command: RefundPayment) -> Outcome:
        payment = self.current.get(command.payment_id)
        if payment is not None and payment.student_id != command.subject:
            # The key and subject must name the payment's student, or the refund would not be
            # ordered with that student's other events (CONTRACT section 1).
            why = f"subject {command.subject!r} is not the student of {payment.payment_id!r}"
            self.plan.bad_input.append((command, why))
            return "bad_input"
        earlier = self.plan.refunds.get(command.refund_id) or self.known.refunds.get(
            command.refund_id
        )
        decided_by_this_event = (
            earlier is not None and earlier.source_event_id == command.source_event_id
        )
        if not command.authorized and not decided_by_this_event:
            # Answered every time, reserving nothing: the refund id stays free for an admin.
            # (A refund this very event got decided is repeated below, though a new record of
            # the event is judged later, say after its assertion expired.)
            event_id = derived_id(
                "payment.rejected", "refund", command.refund_id, "not_authorized",
                command.source_event_id,
            )  # fmt: skip
            refused = self.reject(
                event_id, command.payment_id, "not_authorized", command.source_event_id,
                command.subject,
            )  # fmt: skip
            self._answer(command, refused)
            return "rejected"
        if earlier is not None:
            if earlier.payment_id == command.payment_id:
                if earlier.result is not None:
                    self.plan.messages.append(earlier.result)
                    if not decided_by_this_event:
                        # Kept by this event too: a new record of it, judged later (after its
                        # assertion expired), must repeat this answer, not be refused.
                        self._answer(command, earlier.result)
                else:  # pending: answered when the provider's answer is written
                    self.plan.owed[("refund", command.refund_id)] += 1
                return "duplicate"
            self._conflict(
                command, ("refund", command.refund_id), command.payment_id, command.subject
            )
            return "rejected"
        refusal: PaymentRejection
        if payment is None:
            refusal = "unknown_payment"
        elif verdict(payment.status, "refunded") != "apply" or payment.payment_id in self.refunding:
            refusal = "invalid_transition"
        elif (instant := self._instant(payment.provider)) is not None:
            instant.refund_now(refund_request(payment, command.refund_id, command.reason))
            transition = self.move(payment, "refunded", command.reason, command.source_event_id)
            self._decide_refund(command, "applied", transition.result)
            self._audit(command, payment, "refunded")
            return "applied"
        else:
            # Pending until the provider answers (`settle_refund`): recorded before it is asked.
            self.refunding.add(payment.payment_id)
            self.plan.calls.append(GatewayCall("refund", command.refund_id, payment.payment_id))
            self._decide_refund(command, "pending", None)
            self._audit(command, payment, "requested from the provider")
            return "applied"
        # A refusal is remembered like an effect: a replay of the refund id repeats it.
        event_id = derived_id("payment.rejected", "refund", command.refund_id)
        subject = command.subject if payment is None else payment.student_id
        message = self.reject(
            event_id, command.payment_id, refusal, command.source_event_id, subject
        )
        self._decide_refund(command, "rejected", message)
        return "rejected"

    def _instant(self, provider: Provider) -> InstantGateway | None:
        return None if self.defaults is None else self.defaults.instant.get(provider)

    def reject_webhook(
        self,
        command: ReportStatus | RefuseWebhook,
        reason: PaymentRejection,
        payment_id: str | None,
        subject: str,
    ) -> None:
        event_id = derived_id("payment.rejected", "webhook", reason, command.source_event_id)
        message = self.reject(event_id, payment_id, reason, command.source_event_id, subject)
        self._answer(command, message)
        self.plan.webhook_refusals.append((command.provider, reason))

    def move(
        self,
        payment: Payment,
        target: Status,
        reason: str | None,
        source_event_id: str | None,
        provider_event_id: str | None = None,
    ) -> Transition:
        moved = replace(payment, status=target, status_reason=reason)
        self.keep(moved)
        return self.record(payment.status, moved, source_event_id, provider_event_id)

    def keep(self, payment: Payment) -> None:
        """Write `payment` as it now stands: opened by this plan, it is opened so; else it is
        changed. (The adapter writes both in one statement, where an update cannot see a row
        the same statement inserts: a payment is never in both.)"""
        if payment.payment_id in self.plan.created:
            self.plan.created[payment.payment_id] = payment
        else:
            self.plan.changed[payment.payment_id] = payment

    def record(
        self,
        from_status: Status | None,
        payment: Payment,
        source_event_id: str | None,
        provider_event_id: str | None = None,
    ) -> Transition:
        self.current[payment.payment_id] = payment
        message = status_message(payment, self.now)
        transition = Transition(
            payment.payment_id, from_status, payment.status, message, source_event_id,
            provider_event_id,
        )  # fmt: skip
        self.results[(payment.payment_id, payment.status)] = message
        self.plan.transitions.append(transition)
        self.plan.messages.append(message)
        return transition

    def _conflict(
        self,
        command: OpenPayment | RefundPayment,
        key: tuple[str, str],
        payment_id: str,
        subject: str,
    ) -> None:
        """A replay of `key` with other parameters: refused, and the key stays the first
        request's. The id names the refused event, whose redelivery repeats the answer."""
        event_id = derived_id("payment.rejected", *key, "conflict", command.source_event_id)
        self._answer(
            command,
            self.reject(
                event_id, payment_id, "idempotency_conflict", command.source_event_id, subject
            ),
        )

    def _answer(self, command: AnsweredCommand, message: OutgoingMessage) -> None:
        """Keep `message` (already among the plan's messages) as the answer to `command`'s
        event, for its redelivery."""
        self.plan.answers[event_of(command)] = message

    def reject(
        self,
        event_id: str,
        payment_id: str | None,
        reason: PaymentRejection,
        source_event_id: str,
        subject: str,
        detail: str | None = None,
    ) -> OutgoingMessage:
        data = PaymentRejected(
            payment_id=payment_id, reason=reason, source_event_id=source_event_id, detail=detail
        )
        message = result_message("payment.rejected", event_id, subject, data, self.now)
        self.plan.messages.append(message)
        return message

    def _audit(self, command: RefundPayment, payment: Payment, refund: str) -> None:
        change = {"payment_id": payment.payment_id, "student_id": payment.student_id,
                  "amount": payment.amount, "currency": payment.currency,
                  "provider": payment.provider, "refund": refund}  # fmt: skip
        self.plan.audits.append(
            AuditRecord(
                action=command.event_type,
                subject=payment.payment_id,
                reference_id=command.refund_id,
                actor_id=command.actor_id,
                actor_role=command.actor_role,
                event_source=command.event_source,
                event_id=command.source_event_id,
                change=change,
            )
        )

    def _decide_refund(
        self, command: RefundPayment, outcome: RefundOutcome, result: OutgoingMessage | None
    ) -> None:
        self.plan.refunds[command.refund_id] = RefundDecision(
            command.refund_id,
            command.payment_id,
            outcome,
            command.actor_id,
            command.reason,
            result,
            command.source_event_id,
        )


def status_message(payment: Payment, now: datetime) -> OutgoingMessage:
    """The result event announcing `payment`'s status; its id depends only on the two."""
    event_type = STATUS_EVENTS[payment.status]
    data: OutboundData
    match payment.status:
        case "initiated":
            if payment.provider_payment_id is None or payment.payment_url is None:
                raise ValueError(f"payment {payment.payment_id!r} has no session to announce")
            data = PaymentSessionCreated(
                payment_id=payment.payment_id,
                student_id=payment.student_id,
                course_id=payment.course_id,
                amount=payment.amount,
                currency=payment.currency,
                provider=payment.provider,
                provider_payment_id=payment.provider_payment_id,
                payment_url=payment.payment_url,
                expires_at=payment.expires_at,
            )
        case "succeeded":
            data = PaymentConfirmed(
                payment_id=payment.payment_id,
                student_id=payment.student_id,
                course_id=payment.course_id,
                amount=payment.amount,
                currency=payment.currency,
                # A success can arrive before the session's answer is written (matched by the
                # payment id in the provider's metadata): then the captured money names it.
                provider_payment_id=payment.provider_payment_id or payment.captured_id,
                confirmed_at=now,
            )
        case "failed":
            data = PaymentFailed(**_closed(payment), status="failed", failed_at=now)
        case "cancelled":
            data = PaymentCancelled(**_closed(payment), status="cancelled", cancelled_at=now)
        case "expired":
            data = PaymentExpired(**_closed(payment), status="expired", expired_at=now)
        case "refunded":
            data = PaymentRefunded(**_closed(payment), status="refunded", refunded_at=now)
    event_id = derived_id(event_type, payment.payment_id)
    return result_message(event_type, event_id, payment.student_id, data, now)


def session_request(payment: Payment) -> SessionRequest:
    """What a provider is asked to open for `payment`, payable until its deadline."""
    return SessionRequest(
        payment_id=payment.payment_id,
        student_id=payment.student_id,
        course_id=payment.course_id,
        amount=payment.amount,
        currency=payment.currency,
        description=payment.description,
        expires_at=payment.expires_at,
    )


def refund_request(
    payment: Payment, refund_id: str, reason: str, *, repeat: bool = False
) -> RefundRequest:
    """What a provider is asked to refund: `payment`, in full."""
    return RefundRequest(
        refund_id=refund_id,
        payment_id=payment.payment_id,
        provider_payment_id=payment.provider_payment_id,
        captured_id=payment.captured_id,
        amount=payment.amount,
        currency=payment.currency,
        reason=reason,
        repeat=repeat,
    )


def _same_money(provider: Provider, notification: Notification, payment: Payment) -> bool:
    """Whether a webhook reports the payment's own amount and currency, the provider's units
    converted back to the payment's (ISO 4217 minor units)."""
    if notification.currency != payment.currency:
        return False
    try:
        amount = money.from_provider(provider, notification.amount, notification.currency)
    except ValueError:  # not a whole number of minor units, or a currency it does not know
        return False
    return amount == payment.amount


def _closed(payment: Payment) -> dict[str, str]:
    return {
        "payment_id": payment.payment_id,
        "student_id": payment.student_id,
        "reason": payment.status_reason or "",
    }
