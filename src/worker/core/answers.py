"""Answers kept by the event that got them, so that a redelivery repeats its first answer.

CloudEvents identify an event by `source` and `id`; a redelivered event (the same pair) repeats
its first answer byte for byte, whatever it was (CONTRACT section 3). The event's type is part
of the key too: a producer that numbers each type's events on its own cannot make a credit
answer for a refusal of another type. Most answers are kept with
the decision they report (a ledger entry, a payment's status, a refund) and found again by its
business key; the others (conflicts, `not_authorized`, a webhook's refusal or repeat) are kept
here, by event.
"""

from __future__ import annotations

from typing import Literal

from worker.core.messages import OutgoingMessage

EventKey = tuple[str, str, str]  # (type, source, id)
Answers = dict[EventKey, OutgoingMessage]

# What became of a consumed event (the `outcome` label of `payment_worker_messages_total`):
# coins are applied, repeated or rejected; a payment event may also be ignored (a webhook of a
# kind the worker does not act on) or, once the database was read, found to be bad input.
Outcome = Literal["applied", "duplicate", "rejected", "ignored", "bad_input"]
