"""The audit trail of honoured privileged requests (CONTRACT section 8; docs/security.md).

Every adjustment, refund or catalog upsert the worker honours leaves one record, written in the
transaction that applies it: who asked (the actor's id and role), through which event (its
`source` and `id`), what it was (the event type, the request's id and what it is about) and
what it changed.
The table is append-only; admins read it at `GET /api/v1/admin/audit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AuditRecord:
    action: str  # the request's event type: coins.adjustment.requested, payment.refund.requested
    subject: str  # what it is about: the student, the payment (refund) or the catalog item
    reference_id: str  # the request's own id: adjustment_id, refund_id, the item's version
    actor_id: str
    actor_role: str
    event_source: str
    event_id: str
    change: Mapping[str, object]  # what it changed, as JSON
