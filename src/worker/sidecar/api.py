"""The read API, `/api/v1` (CONTRACT section 7): wallets, ledgers and payments, newest first.

Every route needs a bearer token (`auth.py`). Lists are keyset-paginated by opaque cursors
(`cursors.py`) over each table's `seq`, so entries written while a client pages never shift a
page: nothing is skipped and nothing is repeated. Reads run on the sidecar's own small pool,
with a statement timeout, so they never hold up the consumer's connections.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from worker.core.results import EntryType, PaymentStatus
from worker.core.types import NO_NUL, Provider
from worker.db import reads
from worker.sidecar.auth import AuthError, Caller, verify_token
from worker.sidecar.cursors import CursorError, Cursors

if TYPE_CHECKING:
    import asyncpg

    from worker.db import Connection

log = logging.getLogger(__name__)


class ServiceUnavailableError(Exception):
    """The database cannot answer now (down, or the statement timed out): 503."""


@dataclass(frozen=True)
class ReadApi:
    """What the read routes need once the worker has opened it: the read pool and the cursor
    key. (Tokens are checked from the start, under the secret `create_app` is given.)"""

    pool: asyncpg.Pool = field(repr=False)
    cursors: Cursors = field(repr=False)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self.pool.acquire() as conn:
            yield conn


# --- shapes -----------------------------------------------------------------------------------


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Problem(Model):
    """Every error: a human-readable `detail`."""

    detail: str


class Expiring(Model):
    amount: int = Field(gt=0, description="the coins left in the lots that expire next")
    at: datetime = Field(description="when they expire")


class WalletView(Model):
    student_id: str
    balance: int = Field(ge=0)
    lifetime_earned: int = Field(ge=0)
    lifetime_spent: int = Field(ge=0)
    updated_at: datetime | None = Field(description="null while the student has no wallet")
    expiring: Expiring | None = Field(
        description="the coins that expire next (COIN_EXPIRY_DAYS); null: none will"
    )


# A catalog is a few dozen items; the read answers at most this many, in one page.
CATALOG_LIMIT = 1000


class CatalogItemView(Model):
    item_id: str
    title: str
    cost_coins: int = Field(gt=0)
    stock: int | None = Field(ge=0, description="what remains to redeem; null: unlimited")
    active_from: datetime
    active_until: datetime | None
    per_student_limit: int | None = Field(gt=0)


class CatalogView(Model):
    items: list[CatalogItemView] = Field(
        description=f"the items on offer now, by item_id (at most {CATALOG_LIMIT})"
    )


class TransactionView(Model):
    transaction_id: str
    type: EntryType
    reference_id: str
    amount: int = Field(description="signed: + credit, - debit")
    balance_after: int = Field(ge=0)
    created_at: datetime


class PaymentView(Model):
    payment_id: str
    student_id: str
    course_id: str
    amount: int = Field(gt=0, description="minor units (cents, paise)")
    currency: str
    status: PaymentStatus
    provider: Provider
    provider_payment_id: str | None = Field(
        description="null while the provider is opening the session, or when it refused"
    )
    payment_url: str | None = Field(description="null until the session is open")
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


class ActorView(Model):
    id: str
    role: str


class AuditView(Model):
    recorded_at: datetime
    action: str = Field(description="the request's event type, e.g. coins.adjustment.requested")
    subject: str = Field(description="whom it is about: the student, or the refunded payment")
    reference_id: str = Field(description="the request's id: adjustment_id or refund_id")
    actor: ActorView
    event_source: str = Field(description="the CloudEvents `source` of the request")
    event_id: str = Field(description="the CloudEvents `id` of the request")
    change: dict[str, Any] = Field(description="what it changed")


class AuditPage(Model):
    items: list[AuditView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class TransactionPage(Model):
    items: list[TransactionView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


class PaymentPage(Model):
    items: list[PaymentView]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null: last")


# --- parameters and auth ----------------------------------------------------------------------

StudentId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=NO_NUL, description="the student's id")
]
PaymentId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=NO_NUL, description="the payment's id")
]
Limit = Annotated[int, Query(ge=1, le=100, description="items per page, 1..100")]
Cursor = Annotated[
    str | None,
    Query(max_length=512, description="`next_cursor` of the previous page; omit for the first"),
]

_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="HS256 JWT under SIDECAR_JWT_SECRET with `exp`, `sub` and `role` "
    "(student, admin or service).",
)
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def _api(request: Request) -> ReadApi:
    backends = request.app.state.backends
    if not backends.done():
        raise ServiceUnavailableError("the worker is starting: the read pool is not open yet")
    api: ReadApi = backends.result().read_api
    return api


async def _caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    try:
        if credentials is None:
            raise AuthError("no bearer token")  # noqa: TRY301 - one refusal for every reason
        caller = verify_token(credentials.credentials, request.app.state.token_rules)
    except AuthError as exc:
        # Why goes to the log; the caller learns only that it is not let in, which tells a
        # token thief nothing about what to change.
        log.info(
            "token refused",
            extra={"action": "unauthorized", "error": str(exc), "path": request.url.path},
        )
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unauthorized", _UNAUTHORIZED) from None
    if wait := request.app.state.limiter.take(caller.sub):
        request.app.state.metrics.rate_limited.labels(role=caller.role).inc()
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many requests: slow down",
            {"Retry-After": str(math.ceil(wait))},
        )
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]
ApiDep = Annotated[ReadApi, Depends(_api)]


def _own_data(caller: Caller, student_id: str) -> None:
    if not caller.may_read(student_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "a student may read only their own data")


def _position(api: ReadApi, cursor: str | None, scope: str) -> int | None:
    if cursor is None:
        return None
    try:
        return api.cursors.decode(cursor, scope)
    except CursorError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None


def _page(
    api: ReadApi, rows: Sequence[Any], limit: int, scope: str
) -> tuple[Sequence[Any], str | None]:
    """The page's rows and the cursor after them; one extra row was fetched to know if more."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], api.cursors.encode(scope, rows[limit - 1]["seq"])


def _payment(row: Any) -> PaymentView:
    return PaymentView(**{name: row[name] for name in PaymentView.model_fields})


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    what = {
        400: "a parameter or cursor is not valid",
        401: "no token, or a bad or expired one",
        403: "a student asking for another student's data, or a non-admin for admin data",
        404: "no such payment (or not the caller's)",
        429: "too many requests from this token's subject; retry after `Retry-After` seconds",
        503: "the database cannot answer now; try again",
    }
    return {code: {"model": Problem, "description": what[code]} for code in codes}


# --- routes -----------------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["read API"])


@router.get(
    "/wallets/{student_id}",
    response_model=WalletView,
    responses=_responses(400, 401, 403, 429, 503),
)
async def get_wallet(student_id: StudentId, caller: CallerDep, api: ApiDep) -> WalletView:
    """A student's balance; a student with no wallet yet has balance 0."""
    _own_data(caller, student_id)
    async with api.connection() as conn:
        row = await reads.wallet(conn, student_id)
    if row is None:
        return WalletView(
            student_id=student_id,
            balance=0,
            lifetime_earned=0,
            lifetime_spent=0,
            updated_at=None,
            expiring=None,
        )
    fields = dict(row)
    amount, at = fields.pop("expiring_amount"), fields.pop("expiring_at")
    expiring = None if amount is None else Expiring(amount=amount, at=at)
    return WalletView(**fields, expiring=expiring)


@router.get(
    "/wallets/{student_id}/transactions",
    response_model=TransactionPage,
    responses=_responses(400, 401, 403, 429, 503),
)
async def list_transactions(
    student_id: StudentId,
    caller: CallerDep,
    api: ApiDep,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> TransactionPage:
    """A student's ledger entries, newest first."""
    _own_data(caller, student_id)
    scope = f"transactions\x1f{student_id}"
    before = _position(api, cursor, scope)
    async with api.connection() as conn:
        rows = await reads.transactions(conn, student_id, before, limit + 1)
    page, next_cursor = _page(api, rows, limit, scope)
    items = [
        TransactionView(
            transaction_id=str(row["transaction_id"]),
            type=row["type"],
            reference_id=row["reference_id"],
            amount=row["amount"],
            balance_after=row["balance_after"],
            created_at=row["created_at"],
        )
        for row in page
    ]
    return TransactionPage(items=items, next_cursor=next_cursor)


@router.get(
    "/students/{student_id}/payments",
    response_model=PaymentPage,
    responses=_responses(400, 401, 403, 429, 503),
)
async def list_payments(
    student_id: StudentId,
    caller: CallerDep,
    api: ApiDep,
    status_filter: Annotated[
        PaymentStatus | None, Query(alias="status", description="only payments in this status")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PaymentPage:
    """A student's payments, newest first, optionally of one status."""
    _own_data(caller, student_id)
    scope = f"payments\x1f{student_id}\x1f{status_filter or ''}"
    before = _position(api, cursor, scope)
    async with api.connection() as conn:
        rows = await reads.student_payments(conn, student_id, status_filter, before, limit + 1)
    page, next_cursor = _page(api, rows, limit, scope)
    return PaymentPage(items=[_payment(row) for row in page], next_cursor=next_cursor)


@router.get(
    "/payments/{payment_id}",
    response_model=PaymentView,
    responses=_responses(400, 401, 404, 429, 503),
)
async def get_payment(payment_id: PaymentId, caller: CallerDep, api: ApiDep) -> PaymentView:
    """One payment; 404 when it is unknown or, for a student, not theirs."""
    async with api.connection() as conn:
        row = await reads.payment(conn, payment_id)
    if row is None or not caller.may_read(row["student_id"]):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such payment")
    return _payment(row)


@router.get(
    "/catalog",
    response_model=CatalogView,
    responses=_responses(401, 429, 503),
)
async def get_catalog(caller: CallerDep, api: ApiDep) -> CatalogView:
    """The catalog items on offer now (any role): those whose `active_from` has come and whose
    `active_until` has not, with the stock that remains."""
    async with api.connection() as conn:
        rows = await reads.catalog(conn, datetime.now(UTC), CATALOG_LIMIT)
    return CatalogView(items=[CatalogItemView(**dict(row)) for row in rows])


@router.get(
    "/admin/audit",
    response_model=AuditPage,
    responses=_responses(400, 401, 403, 429, 503),
)
async def list_audit(
    caller: CallerDep, api: ApiDep, limit: Limit = 20, cursor: Cursor = None
) -> AuditPage:
    """The audit trail of honoured privileged requests (adjustments, refunds), newest first;
    `admin` role only."""
    if caller.role != "admin":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the audit trail is for admins only")
    scope = "audit"
    before = _position(api, cursor, scope)
    async with api.connection() as conn:
        rows = await reads.audit(conn, before, limit + 1)
    page, next_cursor = _page(api, rows, limit, scope)
    items = [
        AuditView(
            recorded_at=row["recorded_at"],
            action=row["action"],
            subject=row["subject"],
            reference_id=row["reference_id"],
            actor=ActorView(id=row["actor_id"], role=row["actor_role"]),
            event_source=row["event_source"],
            event_id=row["event_id"],
            change=json.loads(row["change"]),
        )
        for row in page
    ]
    return AuditPage(items=items, next_cursor=next_cursor)
