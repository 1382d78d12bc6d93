"""Makes the provider calls that decisions queue, outside every database transaction.

A batch records a new payment (or accepts a refund) and queues a gateway call in the same
transaction; after the commit this task makes the call and writes the answer in a transaction of
its own. So a provider that hangs or is down delays only payment sessions and refunds, never the
batches that carry coin events, and no wallet or payment lock is held while a provider thinks.

- **One call, one caller:** a call is claimed by a session-level advisory lock on a connection
  of this task's own (Que's pattern): no transaction stays open during the call, and a worker
  that dies frees its calls at once for another (or its own restart).
- **Repeats are harmless:** every call carries an idempotency key derived from the payment or
  refund id, and a refund repeated after an unknown outcome first looks for the refund an
  earlier attempt made. A call whose answer is written is gone from the queue, so no crash or
  restart after the commit asks again.
- **Bounded:** at most `concurrency` calls in flight per provider, each attempt limited to
  `timeout` seconds; a passing failure is retried by `gateway_retry`, then put off in the
  database with growing pauses (or the provider's `Retry-After`); a refusal is final.
- **Never stops:** whatever one call raises, it is logged, counted and put off; the task goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from worker.core.gateway import (
    Gateway,
    GatewayRefusal,
    GatewayUnavailable,
    RefundReceipt,
    Refused,
    Session,
)
from worker.core.payments import PaymentPlan, refund_request, session_request
from worker.core.types import Provider
from worker.db import gateway_calls as calls
from worker.db.gateway_calls import CallKind, StartedCall
from worker.metrics import Metrics
from worker.pipeline import count_payment_plan
from worker.retry import gateway_retry, transient_retry

if TYPE_CHECKING:
    from worker.db import Connection

log = logging.getLogger(__name__)
T = TypeVar("T")

# The longest pause between two tries of a call that keeps failing.
MAX_POSTPONE = timedelta(minutes=10)
# A session call for a payment past its deadline waits for the expiry sweep, which closes it.
EXPIRED_RECHECK = timedelta(seconds=30)


def backoff(attempts: int, retry_after: float | None) -> timedelta:
    """How long to put a call off after its `attempts`-th failed round."""
    pause = timedelta(seconds=2 ** min(attempts, 10))
    if retry_after is not None:
        pause = max(pause, timedelta(seconds=retry_after))
    return min(pause, MAX_POSTPONE)


class GatewayCaller:
    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        gateways: Mapping[Provider, Gateway],
        metrics: Metrics,
        *,
        timeout_seconds: float,
        concurrency: int,
        poll_seconds: float = 1.0,
        on_committed: Callable[[], None] = lambda: None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clock = clock
        self._pool = pool
        self._connect = connect
        self._gateways = gateways
        self._metrics = metrics
        self._timeout = timeout_seconds
        self._concurrency = concurrency
        self._poll = poll_seconds
        self._on_committed = on_committed
        self._limits = {provider: asyncio.Semaphore(concurrency) for provider in gateways}
        self._wake = asyncio.Event()
        # The dedicated connection that holds the calls' advisory locks, one user at a time.
        self._locks: asyncpg.Connection | None = None
        self._locks_mutex = asyncio.Lock()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._providers: dict[str, Provider] = {}  # the provider of each call in flight

    def wake(self) -> None:
        """New calls were queued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and make due calls until cancelled."""
        try:
            while True:
                self._wake.clear()
                try:
                    await self._claim_due()
                except Exception as exc:  # noqa: BLE001 - the database is away; poll again
                    log.warning(
                        "could not claim provider calls; trying again",
                        extra={"action": "gateway_claim", "error": f"{type(exc).__name__}: {exc}"},
                    )
                # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll):
                        await self._wake.wait()
        finally:
            for task in list(self._in_flight.values()):
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            await self._drop_lock_connection()

    async def drain(self) -> None:
        """Make every call due now and wait for their answers to be written (an operator's
        "now", and the tests' way to run the task one step)."""
        while True:
            await self._claim_due()
            if not self._in_flight:
                return
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    async def close(self) -> None:
        """Release the calls' lock connection (`run` does so itself when cancelled)."""
        await self._drop_lock_connection()

    async def _claim_due(self) -> None:
        """Claim due calls while their provider has room: a provider that hangs fills only its
        own slots, never another's."""
        busy = Counter(self._providers.values())
        room = {p: self._concurrency - busy[p] for p in self._gateways}
        if not any(free > 0 for free in room.values()):
            return
        # More candidates than room: another worker may lock some between the query and us.
        wanted = 4 * sum(free for free in room.values() if free > 0)
        async with self._pool.acquire() as conn:
            due = await calls.due_calls(conn, self._clock(), wanted, list(self._in_flight))
        for kind, reference_id, provider in due:
            name = calls.call_name(kind, reference_id)
            if room.get(provider, 0) <= 0 or not await self._try_lock(name):
                continue  # no room for its provider, or another worker is making it
            task = asyncio.create_task(self._make(kind, reference_id, name), name=f"call {name}")
            self._in_flight[name] = task
            self._providers[name] = provider
            room[provider] -= 1

    async def _make(self, kind: CallKind, reference_id: str, name: str) -> None:
        try:
            await self._make_locked(kind, reference_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "provider call failed unexpectedly; trying again later",
                extra={"action": "gateway_error", "call": name},
            )
            with contextlib.suppress(Exception):
                await self._postpone(kind, reference_id, attempts=1, retry_after=None, why="error")
        finally:
            self._in_flight.pop(name, None)
            self._providers.pop(name, None)
            with contextlib.suppress(Exception):
                await self._unlock(name)
            self._wake.set()  # room for another call: look for due ones now

    async def _make_locked(self, kind: CallKind, reference_id: str) -> None:
        now = self._clock()
        started = await self._with_db(lambda conn: calls.start_call(conn, kind, reference_id, now))
        if started is None:
            return  # settled meanwhile
        payment = started.payment
        if kind == "session":
            if payment.status != "initiated" or payment.provider_payment_id is not None:
                await self._with_db(lambda conn: calls.drop(conn, started), transaction=True)
                return
            if payment.expires_at <= now:
                await self._postpone_until(started, now + EXPIRED_RECHECK, "past its deadline")
                return
        try:
            await self._make_started(started)
        except Exception:
            log.exception(
                "provider call failed unexpectedly; trying again later",
                extra={"action": "gateway_error", "call": started.name},
            )
            self._count(started, "error")
            until = self._clock() + backoff(started.earlier_attempts + 1, None)
            await self._postpone_until(started, until, "unexpected error; see the log")

    async def _make_started(self, started: StartedCall) -> None:
        payment = started.payment
        provider = payment.provider
        gateway = self._gateways[provider]
        if started.kind == "session":
            # Asked once: every repeat sends the same, as the idempotency key requires.
            deadline = started.asked_expires_at
            if deadline is None:
                wanted = gateway.session_deadline(payment.expires_at, self._clock())
                deadline = await self._with_db(
                    lambda conn: calls.ask_expires_at(conn, started, wanted)
                )
            started = replace(started, payment=replace(payment, expires_at=deadline))
        try:
            async with self._limits[provider]:
                answer = await self._ask(gateway, started)
        except GatewayUnavailable as unavailable:
            self._count(started, "unavailable")
            log.warning(
                "provider unavailable; the call is tried again later",
                extra={
                    "action": "gateway_unavailable",
                    "call": started.name,
                    "provider": provider,
                    "error": str(unavailable),
                },
            )
            until = self._clock() + backoff(started.earlier_attempts + 1, unavailable.retry_after)
            await self._postpone_until(started, until, str(unavailable))
            return
        self._count(started, "refused" if isinstance(answer, Refused) else "succeeded")
        plan = await self._with_db(
            lambda conn: self._settle(conn, started, answer), transaction=True
        )
        if plan is not None:
            count_payment_plan(self._metrics, plan)
            self._on_committed()
        log.info(
            "provider call settled",
            extra={
                "action": "gateway_settled",
                "call": started.name,
                "provider": provider,
                "payment_id": payment.payment_id,
                "outcome": "refused" if isinstance(answer, Refused) else "succeeded",
            },
        )

    async def _ask(self, gateway: Gateway, call: StartedCall) -> Session | RefundReceipt | Refused:
        """One call, retried while the provider says the failure passes; a refusal is an
        answer. GatewayUnavailable when it did not pass within the policy's attempts."""
        try:
            async for attempt in gateway_retry():
                with attempt:
                    started = time.monotonic()
                    try:
                        async with asyncio.timeout(self._timeout):
                            return await self._request(gateway, call)
                    except TimeoutError:
                        raise GatewayUnavailable(
                            f"{gateway.provider}: no answer within {self._timeout:g} s"
                        ) from None
                    finally:
                        self._metrics.gateway_seconds.labels(
                            provider=gateway.provider, kind=call.kind
                        ).observe(time.monotonic() - started)
        except GatewayRefusal as refusal:
            return Refused(str(refusal))
        raise AssertionError("unreachable: the retry policy returns or raises")

    async def _request(self, gateway: Gateway, call: StartedCall) -> Session | RefundReceipt:
        payment = call.payment
        if call.kind == "session":
            return await gateway.open_session(session_request(payment))
        return await gateway.refund(
            refund_request(
                payment,
                call.reference_id,
                call.refund_reason or "",
                repeat=call.earlier_attempts > 0,
            )
        )

    async def _settle(
        self,
        conn: Connection,
        call: StartedCall,
        answer: Session | RefundReceipt | Refused,
    ) -> PaymentPlan | None:
        return await calls.settle(conn, call, answer, self._clock())

    def _count(self, call: StartedCall, outcome: str) -> None:
        self._metrics.gateway_calls.labels(
            provider=call.payment.provider, kind=call.kind, outcome=outcome
        ).inc()

    async def _postpone(
        self, kind: CallKind, reference_id: str, attempts: int, retry_after: float | None, why: str
    ) -> None:
        until = self._clock() + backoff(attempts, retry_after)
        await self._with_db(lambda conn: calls.postpone(conn, kind, reference_id, until, why))

    async def _postpone_until(self, call: StartedCall, until: datetime, why: str) -> None:
        await self._with_db(
            lambda conn: calls.postpone(conn, call.kind, call.reference_id, until, why[:1000])
        )

    async def _with_db(
        self, work: Callable[[Connection], Awaitable[T]], transaction: bool = False
    ) -> T:
        """Run `work(conn)` on a pooled connection, retrying passing database faults."""
        async for attempt in transient_retry():
            with attempt:
                async with self._pool.acquire() as conn:
                    if not transaction:
                        return await work(conn)
                    async with conn.transaction():
                        return await work(conn)
        raise AssertionError("unreachable: the retry policy returns or raises")

    async def _try_lock(self, name: str) -> bool:
        async with self._locks_mutex:
            if self._locks is None or self._locks.is_closed():
                self._locks = await self._connect()
            try:
                return await calls.try_lock(self._locks, name)
            except Exception:
                # A broken lock connection has lost its locks: calls in flight under them go on,
                # and the attempt fence (gateway_calls_finish) keeps a later attempt's answer.
                with contextlib.suppress(Exception):
                    await self._locks.close()
                self._locks = None
                raise

    async def _unlock(self, name: str) -> None:
        async with self._locks_mutex:
            if self._locks is not None and not self._locks.is_closed():
                await calls.unlock(self._locks, name)

    async def _drop_lock_connection(self) -> None:
        async with self._locks_mutex:
            if self._locks is not None:
                with contextlib.suppress(Exception):
                    await self._locks.close()
                self._locks = None
