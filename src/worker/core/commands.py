"""From a consumed record to the command it asks for: the one dispatch, by the registry."""

from __future__ import annotations

from datetime import datetime

from worker.core.catalog import UpsertItem
from worker.core.coins import CoinCommand
from worker.core.envelope import BadInputError, decode, parse_data
from worker.core.handlers import Command, Policies
from worker.core.messages import Headers
from worker.core.payments import OpenPayment, ReportStatus
from worker.core.registry import BY_TYPE


def command_for(
    kind: str,
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    policies: Policies,
    appended_at: datetime | None = None,
) -> Command:
    """The command a consumed record asks for; BadInputError if it is not a valid event.
    `appended_at` is when the broker appended the record, where its topic records that."""
    registered = BY_TYPE.get(kind)
    if registered is None:
        raise BadInputError(f"no handler for event type {kind!r}")
    envelope = decode(value, headers, kind, appended_at)
    command = registered.handler(envelope, parse_data(envelope, registered.data), policies)
    _check_subject(envelope.subject, key, _named_by_data(command))
    return command


def _named_by_data(command: Command) -> str | None:
    """Whom the event's data is about: its student, a catalog item, or for a webhook the
    provider payment id.
    None when the data names nobody the edge can check (a refund names a payment; a refused or
    ignored webhook's body is not read)."""
    match command:
        case CoinCommand() | OpenPayment():
            return command.student_id
        case UpsertItem():
            return command.item.item_id
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
