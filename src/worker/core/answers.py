"""Answers kept by the event that got them, so that a redelivery repeats its first answer.

CloudEvents identify an event by `source` and `id`; a redelivered event (the same pair) repeats
its first answer byte for byte, whatever it was (CONTRACT section 3). Most answers are kept with
the decision they report (a ledger entry, a payment's status, a refund) and found again by its
business key; the others (conflicts, `not_authorized`, a webhook's refusal or repeat) are kept
here, by event.
"""

from __future__ import annotations

from worker.core.messages import OutgoingMessage

EventKey = tuple[str, str]  # (source, id)
Answers = dict[EventKey, OutgoingMessage]
