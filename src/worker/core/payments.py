"""Payment handlers: one verb per consumed payment event type, each turning it into a command."""

from __future__ import annotations

from collections.abc import Callable

from worker.core.envelope import Envelope, parse_data
from worker.core.events import PaymentRefundRequested, PaymentRequested, PaymentWebhookReceived
from worker.core.lifecycle import (
    IgnoreWebhook,
    OpenPayment,
    PaymentCommand,
    RefundPayment,
    RefuseWebhook,
    ReportStatus,
)
from worker.core.signatures import SignatureError, WebhookVerifier
from worker.core.webhooks import parse_notification


def open_payment(event: Envelope, _: WebhookVerifier) -> PaymentCommand:
    data = parse_data(event, PaymentRequested)
    return OpenPayment(
        payment_id=data.payment_id,
        student_id=data.student_id,
        course_id=data.course_id,
        amount=data.amount,
        currency=data.currency,
        description=data.description,
        source_event_id=event.id,
        event_source=event.source,
        provider=data.provider,
    )


def receive_webhook(event: Envelope, verifier: WebhookVerifier) -> PaymentCommand:
    """Check the signature before anything else; only then read what the body reports."""
    data = parse_data(event, PaymentWebhookReceived)
    try:
        verifier.verify(data.provider, data.headers, data.body, received_at=event.time)
    except SignatureError as refused:
        return RefuseWebhook(
            data.provider, refused.reason, str(refused), event.id, event.subject, event.source
        )
    notification = parse_notification(data.provider, data.body)
    if notification is None:
        return IgnoreWebhook(data.provider, event.id)
    return ReportStatus(data.provider, notification, event.id, event.subject, event.source)


def refund_payment(event: Envelope, _: WebhookVerifier) -> PaymentCommand:
    data = parse_data(event, PaymentRefundRequested)
    return RefundPayment(
        refund_id=data.refund_id,
        payment_id=data.payment_id,
        reason=data.reason,
        actor_id=data.actor.id,
        authorized=data.actor.role == "admin",
        source_event_id=event.id,
        subject=event.subject,
        event_source=event.source,
    )


PAYMENT_HANDLERS: dict[str, Callable[[Envelope, WebhookVerifier], PaymentCommand]] = {
    "payment.requested": open_payment,
    "payment.webhook.received": receive_webhook,
    "payment.refund.requested": refund_payment,
}
