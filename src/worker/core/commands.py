"""From a consumed record to the command it asks for: the one dispatch over every handler."""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.coins import COIN_HANDLERS, Rewards
from worker.core.envelope import BadInputError, decode
from worker.core.ledger import CoinCommand
from worker.core.lifecycle import OpenPayment, PaymentCommand, ReportStatus
from worker.core.messages import Headers
from worker.core.payments import PAYMENT_HANDLERS
from worker.core.signatures import WebhookVerifier

Command = CoinCommand | PaymentCommand

# The event types the worker handles; it subscribes to exactly these topics.
HANDLED_TYPES: tuple[str, ...] = (*COIN_HANDLERS, *PAYMENT_HANDLERS)


@dataclass(frozen=True)
class Policies:
    """What handlers need from configuration: the coin rewards and the webhook secrets."""

    rewards: Rewards
    webhooks: WebhookVerifier


def command_for(
    kind: str, key: bytes | None, value: bytes | None, headers: Headers, policies: Policies
) -> Command:
    """The command a consumed record asks for; BadInputError if it is not a valid event."""
    command: Command
    coin_handler = COIN_HANDLERS.get(kind)
    payment_handler = PAYMENT_HANDLERS.get(kind)
    if coin_handler is not None:
        envelope = decode(value, headers, kind)
        command = coin_handler(envelope, policies.rewards)
    elif payment_handler is not None:
        envelope = decode(value, headers, kind)
        command = payment_handler(envelope, policies.webhooks)
    else:
        raise BadInputError(f"no handler for event type {kind!r}")
    _check_subject(envelope.subject, key, _named_by_data(command))
    return command


def _named_by_data(command: Command) -> str | None:
    """Whom the event's data is about: its student, or for a webhook the provider payment id.
    None when the data names nobody the edge can check (a refund names a payment; a refused or
    ignored webhook's body is not read)."""
    match command:
        case CoinCommand() | OpenPayment():
            return command.student_id
        case ReportStatus():
            return command.notification.provider_payment_id
    return None


def _check_subject(subject: str, key: bytes | None, named: str | None) -> None:
    """CONTRACT section 1: the key and `subject` both name the event's student (or payment);
    an event whose key, subject and data disagree would be applied out of that one's order."""
    if key != subject.encode():
        shown = key if key is None else key.decode("utf-8", "replace")
        raise BadInputError(f"the Kafka key {shown!r} is not the event's subject {subject!r}")
    if named is not None and named != subject:
        raise BadInputError(f"subject {subject!r} does not name {named!r}, whom the data is about")
