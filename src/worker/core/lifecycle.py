"""The payment state machine (CONTRACT section 5) and what a batch of payment commands does.

Pure: the adapter loads the payments a batch touches (locked), their earlier results and refund
decisions, and the sessions the gateway opened for new payments; `decide_payments` works out
every change and result in order; the adapter writes them back in a few set-based statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from worker.core.answers import Answers, EventKey
from worker.core.gateway import Session, SessionRequest
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
from worker.core.webhooks import Notification

Status = PaymentStatus
Verdict = Literal["apply", "repeat", "refuse"]
Outcome = Literal["applied", "duplicate", "rejected", "ignored", "bad_input"]

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
}


def verdict(current: Status, target: Status) -> Verdict:
    """`repeat` when the payment already has `target`; `apply` when the move is allowed."""
    if current == target:
        return "repeat"
    return "apply" if target in TRANSITIONS[current] else "refuse"


def is_late_success(current: Status, target: Status) -> bool:
    """A verified success for a payment that had already failed, been cancelled or expired."""
    return target == "succeeded" and current in ("failed", "cancelled", "expired")


@dataclass(frozen=True, slots=True)
class Payment:
    """A row of `payments`, as far as the rules need it."""

    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None
    provider: Provider
    provider_payment_id: str
    payment_url: str
    expires_at: datetime
    status: Status
    status_reason: str | None
    source_event_id: str


@dataclass(frozen=True, slots=True)
class OpenPayment:
    """`payment.requested`."""

    payment_id: str
    student_id: str
    course_id: str
    amount: int
    currency: str
    description: str | None
    source_event_id: str
    event_source: str

    def session_request(self) -> SessionRequest:
        return SessionRequest(
            self.payment_id,
            self.student_id,
            self.course_id,
            self.amount,
            self.currency,
            self.description,
        )

    def same_request(self, payment: Payment) -> bool:
        """CONTRACT section 3: a replay must name the same amount, currency, student, course."""
        return (self.student_id, self.course_id, self.amount, self.currency) == (
            payment.student_id,
            payment.course_id,
            payment.amount,
            payment.currency,
        )


@dataclass(frozen=True, slots=True)
class ReportStatus:
    """A verified webhook reporting a status."""

    provider: Provider
    notification: Notification
    source_event_id: str
    subject: str
    event_source: str


@dataclass(frozen=True, slots=True)
class RefuseWebhook:
    """A webhook whose signature does not hold: refused before its body is read."""

    provider: Provider
    reason: SignatureRefusal
    detail: str
    source_event_id: str
    subject: str
    event_source: str


@dataclass(frozen=True, slots=True)
class IgnoreWebhook:
    """A verified webhook of an event type the worker does not act on."""

    provider: Provider
    source_event_id: str


@dataclass(frozen=True, slots=True)
class RefundPayment:
    """`payment.refund.requested`."""

    refund_id: str
    payment_id: str
    reason: str
    actor_id: str
    authorized: bool
    source_event_id: str
    subject: str
    event_source: str


PaymentCommand = OpenPayment | ReportStatus | RefuseWebhook | IgnoreWebhook | RefundPayment
# The commands that get an answer (an ignored webhook gets none).
AnsweredCommand = OpenPayment | ReportStatus | RefuseWebhook | RefundPayment

# The consumed event type behind each command, for metrics labelled by what was consumed.
COMMAND_EVENT_TYPES: Mapping[type, str] = {
    OpenPayment: "payment.requested",
    ReportStatus: "payment.webhook.received",
    RefuseWebhook: "payment.webhook.received",
    IgnoreWebhook: "payment.webhook.received",
    RefundPayment: "payment.refund.requested",
}


def event_of(command: AnsweredCommand) -> EventKey:
    """The consumed event behind `command`, as answers are kept by."""
    return (COMMAND_EVENT_TYPES[type(command)], command.event_source, command.source_event_id)


@dataclass(frozen=True, slots=True)
class Transition:
    """A status a payment reached, with the result that announced it (kept for repeats)."""

    payment_id: str
    from_status: Status | None
    to_status: Status
    result: OutgoingMessage
    source_event_id: str | None


@dataclass(frozen=True, slots=True)
class RefundDecision:
    """What was decided for a refund id, kept forever: a replay repeats its result."""

    payment_id: str
    outcome: Literal["applied", "rejected"]
    actor_id: str
    reason: str
    result: OutgoingMessage


@dataclass(frozen=True)
class Known:
    """What earlier batches decided, for the payments and refunds a batch names."""

    payments: Mapping[str, Payment] = field(default_factory=dict)
    results: Mapping[tuple[str, Status], OutgoingMessage] = field(default_factory=dict)
    refunds: Mapping[str, RefundDecision] = field(default_factory=dict)
    # The result each applied webhook event got, by (CloudEvent id, payment id): a redelivery
    # repeats it even when the payment has moved on since (say, to a late success).
    webhooks: Mapping[tuple[str, str], OutgoingMessage] = field(default_factory=dict)
    # Every other answer, by the event that got it (see `worker.core.answers`).
    answered: Mapping[EventKey, OutgoingMessage] = field(default_factory=dict)


@dataclass
class PaymentPlan:
    """Everything one batch (or one expiry sweep) changes; persisted in one transaction."""

    created: dict[str, Payment] = field(default_factory=dict)
    changed: dict[str, Payment] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    refunds: dict[str, RefundDecision] = field(default_factory=dict)
    gateway_refunds: list[tuple[Payment, str]] = field(default_factory=list)
    messages: list[OutgoingMessage] = field(default_factory=list)
    outcomes: list[tuple[str, Outcome]] = field(default_factory=list)
    webhook_refusals: list[tuple[Provider, PaymentRejection]] = field(default_factory=list)
    late_successes: list[Transition] = field(default_factory=list)
    answers: Answers = field(default_factory=dict)
    # Commands found to be bad input only once the database was read: dead-lettered, not
    # answered (see `_Book.refund`).
    bad_input: list[tuple[PaymentCommand, str]] = field(default_factory=list)


def decide_payments(
    commands: Iterable[PaymentCommand],
    known: Known,
    sessions: Mapping[str, Session],
    now: datetime,
) -> PaymentPlan:
    """Apply `commands` in order; `sessions` holds the gateway's session for each new payment."""
    book = _Book(known, now)
    for command in commands:
        first_answer = None if isinstance(command, IgnoreWebhook) else book.answered(command)
        if first_answer is not None:
            book.plan.messages.append(first_answer)
            outcome: Outcome = "duplicate"
        else:
            outcome = book.decide(command, sessions)
        if outcome != "bad_input":
            book.plan.outcomes.append((COMMAND_EVENT_TYPES[type(command)], outcome))
    return book.plan


def expire_payments(payments: Iterable[Payment], now: datetime) -> PaymentPlan:
    """Move every `initiated` payment whose `expires_at` has passed to `expired`."""
    book = _Book(Known(), now)
    for payment in payments:
        book.current[payment.payment_id] = payment
        if verdict(payment.status, "expired") == "apply" and payment.expires_at <= now:
            book.move(payment, "expired", EXPIRED_REASON, None)
    return book.plan


class _Book:
    """The batch's view of payments: what was known, updated by each decision in turn."""

    def __init__(self, known: Known, now: datetime) -> None:
        self.plan = PaymentPlan()
        self.now = now
        self.known = known
        self.current: dict[str, Payment] = dict(known.payments)
        self.by_provider = {
            (p.provider, p.provider_payment_id): p.payment_id for p in known.payments.values()
        }
        self.results: dict[tuple[str, Status], OutgoingMessage] = dict(known.results)
        self.webhooks: dict[tuple[str, str], OutgoingMessage] = dict(known.webhooks)

    def answered(self, command: AnsweredCommand) -> OutgoingMessage | None:
        """The first answer of a redelivered event, when no decision repeats it by itself."""
        event = event_of(command)
        return self.plan.answers.get(event) or self.known.answered.get(event)

    def decide(self, command: PaymentCommand, sessions: Mapping[str, Session]) -> Outcome:
        match command:
            case OpenPayment():
                return self.open(command, sessions)
            case ReportStatus():
                return self.report(command)
            case RefuseWebhook():
                self.reject_webhook(command, command.reason, None, command.subject)
                return "rejected"
            case IgnoreWebhook():
                return "ignored"
            case RefundPayment():
                return self.refund(command)

    def open(self, command: OpenPayment, sessions: Mapping[str, Session]) -> Outcome:
        payment = self.current.get(command.payment_id)
        if payment is not None:
            if command.same_request(payment):
                self.plan.messages.append(self.results[(payment.payment_id, "initiated")])
                return "duplicate"
            self._conflict(
                command, ("payment.requested", command.payment_id), command.payment_id,
                command.student_id,
            )  # fmt: skip
            return "rejected"
        session = sessions[command.payment_id]
        payment = Payment(
            payment_id=command.payment_id,
            student_id=command.student_id,
            course_id=command.course_id,
            amount=command.amount,
            currency=command.currency,
            description=command.description,
            provider=session.provider,
            provider_payment_id=session.provider_payment_id,
            payment_url=session.payment_url,
            expires_at=session.expires_at,
            status="initiated",
            status_reason=None,
            source_event_id=command.source_event_id,
        )
        self.plan.created[payment.payment_id] = payment
        self.by_provider[(payment.provider, payment.provider_payment_id)] = payment.payment_id
        self._record(None, payment, command.source_event_id)
        return "applied"

    def report(self, command: ReportStatus) -> Outcome:
        notification = command.notification
        payment_id = self.by_provider.get((command.provider, notification.provider_payment_id))
        payment = None if payment_id is None else self.current[payment_id]
        if payment is None:
            self.reject_webhook(command, "unknown_payment", None, command.subject)
            return "rejected"
        applied_before = self.webhooks.get((command.source_event_id, payment.payment_id))
        if applied_before is not None:
            self.plan.messages.append(applied_before)
            return "duplicate"
        if (notification.amount, notification.currency) != (payment.amount, payment.currency):
            self.reject_webhook(command, "amount_mismatch", payment.payment_id, payment.student_id)
            return "rejected"
        target = notification.status
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
        transition = self.move(payment, target, reason, command.source_event_id)
        self.webhooks[(command.source_event_id, payment.payment_id)] = transition.result
        if is_late_success(payment.status, target):
            self.plan.late_successes.append(transition)
        return "applied"

    def refund(self, command: RefundPayment) -> Outcome:
        payment = self.current.get(command.payment_id)
        if payment is not None and payment.student_id != command.subject:
            # The key and subject must name the payment's student, or the refund would not be
            # ordered with that student's other events (CONTRACT section 1).
            why = f"subject {command.subject!r} is not the student of {payment.payment_id!r}"
            self.plan.bad_input.append((command, why))
            return "bad_input"
        if not command.authorized:
            # Answered every time, reserving nothing: the refund id stays free for an admin.
            event_id = derived_id(
                "payment.rejected", "refund", command.refund_id, "not_authorized",
                command.source_event_id,
            )  # fmt: skip
            refused = self._reject(
                event_id, command.payment_id, "not_authorized", command.source_event_id,
                command.subject,
            )  # fmt: skip
            self._answer(command, refused)
            return "rejected"
        earlier = self.plan.refunds.get(command.refund_id) or self.known.refunds.get(
            command.refund_id
        )
        if earlier is not None:
            if earlier.payment_id == command.payment_id:
                self.plan.messages.append(earlier.result)
                return "duplicate"
            self._conflict(
                command, ("refund", command.refund_id), command.payment_id, command.subject
            )
            return "rejected"
        refusal: PaymentRejection
        if payment is None:
            refusal = "unknown_payment"
        elif verdict(payment.status, "refunded") != "apply":
            refusal = "invalid_transition"
        else:
            transition = self.move(payment, "refunded", command.reason, command.source_event_id)
            self.plan.gateway_refunds.append((payment, command.refund_id))
            self._decide_refund(command, "applied", transition.result)
            return "applied"
        # A refusal is remembered like an effect: a replay of the refund id repeats it.
        event_id = derived_id("payment.rejected", "refund", command.refund_id)
        subject = command.subject if payment is None else payment.student_id
        message = self._reject(
            event_id, command.payment_id, refusal, command.source_event_id, subject
        )
        self._decide_refund(command, "rejected", message)
        return "rejected"

    def reject_webhook(
        self,
        command: ReportStatus | RefuseWebhook,
        reason: PaymentRejection,
        payment_id: str | None,
        subject: str,
    ) -> None:
        event_id = derived_id("payment.rejected", "webhook", reason, command.source_event_id)
        message = self._reject(event_id, payment_id, reason, command.source_event_id, subject)
        self._answer(command, message)
        self.plan.webhook_refusals.append((command.provider, reason))

    def move(
        self, payment: Payment, target: Status, reason: str | None, source_event_id: str | None
    ) -> Transition:
        moved = replace(payment, status=target, status_reason=reason)
        if moved.payment_id in self.plan.created:
            self.plan.created[moved.payment_id] = moved
        else:
            self.plan.changed[moved.payment_id] = moved
        return self._record(payment.status, moved, source_event_id)

    def _record(
        self, from_status: Status | None, payment: Payment, source_event_id: str | None
    ) -> Transition:
        self.current[payment.payment_id] = payment
        message = status_message(payment, self.now)
        transition = Transition(
            payment.payment_id, from_status, payment.status, message, source_event_id
        )
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
            self._reject(
                event_id, payment_id, "idempotency_conflict", command.source_event_id, subject
            ),
        )

    def _answer(self, command: AnsweredCommand, message: OutgoingMessage) -> None:
        """Keep `message` (already among the plan's messages) as the answer to `command`'s
        event, for its redelivery."""
        self.plan.answers[event_of(command)] = message

    def _reject(
        self,
        event_id: str,
        payment_id: str | None,
        reason: PaymentRejection,
        source_event_id: str,
        subject: str,
    ) -> OutgoingMessage:
        data = PaymentRejected(
            payment_id=payment_id, reason=reason, source_event_id=source_event_id
        )
        message = result_message("payment.rejected", event_id, subject, data, self.now)
        self.plan.messages.append(message)
        return message

    def _decide_refund(
        self,
        command: RefundPayment,
        outcome: Literal["applied", "rejected"],
        result: OutgoingMessage,
    ) -> None:
        self.plan.refunds[command.refund_id] = RefundDecision(
            command.payment_id, outcome, command.actor_id, command.reason, result
        )


def status_message(payment: Payment, now: datetime) -> OutgoingMessage:
    """The result event announcing `payment`'s status; its id depends only on the two."""
    event_type = STATUS_EVENTS[payment.status]
    data: OutboundData
    match payment.status:
        case "initiated":
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
                provider_payment_id=payment.provider_payment_id,
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


def _closed(payment: Payment) -> dict[str, str]:
    return {
        "payment_id": payment.payment_id,
        "student_id": payment.student_id,
        "reason": payment.status_reason or "",
    }
