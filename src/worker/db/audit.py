"""The audit trail in PostgreSQL: appended in the batch's transaction (`worker.core.audit`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from worker.core.audit import AuditRecord
from worker.db.queries import sql, unnest_arrays

if TYPE_CHECKING:
    from worker.db import Connection


async def record(conn: Connection, audits: Sequence[AuditRecord]) -> None:
    """Append `audits` inside the caller's transaction; one statement, none when empty."""
    if audits:
        arrays = unnest_arrays(
            "audit_record", audits, change=lambda a: json.dumps(a.change, sort_keys=True)
        )
        await conn.execute(sql("audit_record"), *arrays)
