"""The composition root: wires settings, pool, Kafka clients, metrics and the sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from worker.core.gateway import Gateway
from worker.core.handlers import Policies, Rewards
from worker.core.payments import PaymentDefaults
from worker.core.signatures import WebhookVerifier
from worker.core.topics import ALL_TOPICS, INPUT_TOPICS, with_prefix
from worker.core.types import Provider
from worker.db.migrate import apply_migrations
from worker.db.pool import open_pool
from worker.db.queries import sql
from worker.expiry import ExpirySweeper
from worker.gateway_calls import GatewayCaller
from worker.gateways.mock import MockGateway, UnconfiguredGateway
from worker.gateways.razorpay import RazorpayGateway
from worker.gateways.stripe import StripeGateway
from worker.messaging.clients import (
    coordinator_known,
    ensure_topics,
    make_consumer,
    make_producer,
    start_with_retry,
)
from worker.messaging.consume import ConsumeLoop
from worker.messaging.outbox import OutboxRelay
from worker.metrics import Metrics
from worker.pipeline import Pipeline
from worker.settings import Settings, jwt_secret
from worker.sidecar.api import ReadApi
from worker.sidecar.app import create_app
from worker.sidecar.cursors import Cursors
from worker.sidecar.server import embedded_server

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """What /readyz looks at; filled in as the worker's parts come up."""

    pool: asyncpg.Pool | None = None
    loop: ConsumeLoop | None = None
    consumer: Any = None
    metrics: Metrics | None = field(default=None, repr=False)

    async def __call__(self) -> dict[str, bool]:
        checks = {"database": await self._database(), "kafka_group": self._in_group()}
        if self.metrics is not None:
            self.metrics.ready.set(1 if all(checks.values()) else 0)
        return checks

    async def _database(self) -> bool:
        if self.pool is None:
            return False
        try:
            async with asyncio.timeout(1.0):
                async with self.pool.acquire() as conn:
                    await conn.fetchval(sql("ping"))
        except Exception:  # noqa: BLE001 - any failure to answer means "not ready"
            return False
        return True

    def _in_group(self) -> bool:
        return bool(self.loop and self.loop.guard.joined and coordinator_known(self.consumer))


async def migrate(settings: Settings) -> int:
    """Apply the migrations and exit: the `migrate` command."""
    pool = await open_pool(settings.database_url.get_secret_value(), min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            applied = await apply_migrations(conn)
    finally:
        await pool.close()
    log.info("migrations up to date", extra={"action": "migrate", "applied": len(applied)})
    return 0


async def run(settings: Settings) -> int:
    """Run the worker and its sidecar until SIGTERM or SIGINT: the `run` command."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    metrics = Metrics(CollectorRegistry())
    readiness = Readiness(metrics=metrics)
    read_api = make_read_api(settings)
    sidecar = embedded_server(
        create_app(readiness, metrics, read_api),
        settings.sidecar_host,
        settings.payment_service_port,
    )
    sidecar_task = asyncio.create_task(sidecar.serve(), name="sidecar")
    worker_task = asyncio.create_task(
        _work(settings, metrics, readiness, read_api, stop), name="worker"
    )
    stop_task = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait(
            {worker_task, sidecar_task, stop_task}, return_when=asyncio.FIRST_COMPLETED
        )
        if stop_task in done:
            log.info("stopping", extra={"action": "shutdown"})
            await _finish(worker_task, settings.worker_shutdown_grace_seconds)
        exit_code = 0 if stop.is_set() else 1
        for task in done - {stop_task}:
            if task.cancelled():
                log.error("stopped: %s was cancelled", task.get_name(), extra={"action": "crash"})
                exit_code = 1
            elif task.exception() is not None:
                log.error(
                    "stopped by an error", exc_info=task.exception(), extra={"action": "crash"}
                )
                exit_code = 1
    finally:
        stop_task.cancel()
        sidecar.should_exit = True
        await _finish(worker_task, 0)
        await asyncio.gather(sidecar_task, return_exceptions=True)
    log.info("stopped", extra={"action": "stopped", "exit_code": exit_code})
    return exit_code


async def _close(client: Any, name: str) -> None:
    """Stop an aiokafka client; a failure to stop must not hide why the worker is stopping."""
    try:
        await client.stop()
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - logged, then ignored
        log.warning("%s did not stop cleanly: %r", name, exc, extra={"action": "close"})


async def _finish(task: asyncio.Task[None], grace_seconds: float) -> None:
    """Let `task` end by itself for a while, then cancel it."""
    with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
        await asyncio.wait_for(asyncio.shield(task), grace_seconds)
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def policies(settings: Settings) -> Policies:
    """The rewards and webhook secrets the handlers apply."""
    secrets: dict[Provider, SecretStr | None] = {
        "mock": settings.payment_webhook_secret_mock,
        "stripe": settings.payment_webhook_secret_stripe,
        "razorpay": settings.payment_webhook_secret_razorpay,
    }
    keys = {p: None if s is None else s.get_secret_value().encode() for p, s in secrets.items()}
    return Policies(
        rewards=Rewards(
            settings.coin_reward_course_completion,
            settings.coin_reward_referral,
            settings.coin_max_amount,
        ),
        webhooks=WebhookVerifier(keys, settings.payment_webhook_tolerance_seconds),
    )


def gateways(settings: Settings, mock: MockGateway) -> dict[Provider, Gateway]:
    """Every provider's gateway; one without credentials refuses its payments, saying why."""
    timeout = settings.payment_gateway_timeout_seconds
    found: dict[Provider, Gateway] = {"mock": mock}
    if settings.stripe_api_key is None:
        found["stripe"] = UnconfiguredGateway("stripe", "STRIPE_API_KEY")
    else:
        found["stripe"] = StripeGateway(
            settings.stripe_api_key.get_secret_value(),
            settings.stripe_api_base,
            timeout,
            settings.payment_return_url,
        )
    if settings.razorpay_key_id is None or settings.razorpay_key_secret is None:
        found["razorpay"] = UnconfiguredGateway("razorpay", "RAZORPAY_KEY_ID")
    else:
        found["razorpay"] = RazorpayGateway(
            settings.razorpay_key_id,
            settings.razorpay_key_secret.get_secret_value(),
            settings.razorpay_api_base,
            timeout,
            settings.payment_return_url,
            settings.payment_gateway_concurrency,
        )
    if isinstance(found[settings.payment_provider], UnconfiguredGateway):
        log.warning(
            "PAYMENT_PROVIDER has no credentials: its payments will fail",
            extra={"action": "gateway_unconfigured", "provider": settings.payment_provider},
        )
    return found


def payment_defaults(settings: Settings, mock: MockGateway) -> PaymentDefaults:
    return PaymentDefaults(
        provider=settings.payment_provider,
        session_ttl=timedelta(minutes=settings.payment_session_ttl_minutes),
        instant={"mock": mock},  # computed in the batch: no call to queue
    )


def make_read_api(settings: Settings) -> ReadApi:
    """The read API's secrets; its pool is opened with the worker's."""
    if settings.sidecar_jwt_secret is None:
        log.warning(
            "SIDECAR_DEV_MODE: read-API tokens use the public development secret",
            extra={"action": "dev_mode"},
        )
    secret = jwt_secret(settings)
    cursor_key = hmac.new(secret.encode(), b"payment-worker cursors", hashlib.sha256).digest()
    return ReadApi(jwt_secret=secret, cursors=Cursors(cursor_key))


async def _work(
    settings: Settings,
    metrics: Metrics,
    readiness: Readiness,
    read_api: ReadApi,
    stop: asyncio.Event,
) -> None:
    """Bring up the pool, schema, topics and clients; consume until `stop`; close in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        pool = await open_pool(
            settings.database_url.get_secret_value(),
            min_size=2,
            max_size=settings.worker_db_pool_size,
        )
        stack.push_async_callback(pool.close)
        async with pool.acquire() as conn:
            await apply_migrations(conn)
        # The read API's own pool: read-only, with a statement timeout, apart from the consumer's.
        read_pool = await open_pool(
            settings.database_url.get_secret_value(),
            min_size=1,
            max_size=settings.sidecar_db_pool_size,
            statement_timeout_ms=settings.sidecar_statement_timeout_ms,
            read_only=True,
            name="payment-worker-reads",
        )
        stack.push_async_callback(read_pool.close)
        read_api.pool = read_pool
        await ensure_topics(settings, with_prefix(settings.kafka_topic_prefix, ALL_TOPICS))

        relay = OutboxRelay(
            pool,
            lambda: make_producer(settings),
            metrics,
            topic_prefix=settings.kafka_topic_prefix,
        )
        await relay.start()
        stack.push_async_callback(relay.close)
        relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        stack.push_async_callback(_finish, relay_task, 0)

        sweeper = ExpirySweeper(
            pool,
            metrics,
            interval_seconds=settings.payment_expiry_interval_seconds,
            on_committed=relay.wake,
        )
        sweeper_task = asyncio.create_task(sweeper.run(), name="expiry-sweep")
        stack.push_async_callback(_finish, sweeper_task, 0)

        dsn = settings.database_url.get_secret_value()
        mock = MockGateway(settings.payment_mock_url_base)
        providers = gateways(settings, mock)
        caller = GatewayCaller(
            pool,
            lambda: asyncpg.connect(dsn, server_settings={"application_name": "payment-worker"}),
            providers,
            metrics,
            timeout_seconds=settings.payment_gateway_timeout_seconds,
            concurrency=settings.payment_gateway_concurrency,
            on_committed=relay.wake,
        )
        caller_task = asyncio.create_task(caller.run(), name="gateway-calls")
        stack.push_async_callback(_finish, caller_task, 0)

        consumer = make_consumer(settings)
        topics = with_prefix(settings.kafka_topic_prefix, INPUT_TOPICS)
        pipeline = Pipeline(
            pool,
            metrics,
            policies(settings),
            payment_defaults(settings, mock),
            settings.kafka_topic_prefix,
            on_durable=relay.wake,
            on_gateway_calls=caller.wake,
        )
        consume = ConsumeLoop(
            consumer,
            topics,
            pipeline.process,
            metrics,
            dead_letter=pipeline.dead_letter_unreadable,
            max_records=settings.worker_batch_max_records,
            max_wait_ms=settings.worker_batch_max_wait_ms,
            failpoint_after_db_commit=settings.worker_failpoint_after_db_commit,
        )
        await start_with_retry(consumer, "consumer")
        stack.push_async_callback(_close, consumer, "consumer")

        readiness.pool, readiness.loop, readiness.consumer = pool, consume, consumer
        log.info("worker started", extra={"action": "started", "topics": list(topics)})
        await _alongside(consume.run(stop), [relay_task, sweeper_task, caller_task])


async def _alongside(main: Coroutine[Any, Any, None], helpers: list[asyncio.Task[None]]) -> None:
    """Run `main` to its end; a helper task that ends first (they never should) is a crash."""
    main_task = asyncio.create_task(main, name="consume")
    try:
        done, _ = await asyncio.wait({main_task, *helpers}, return_when=asyncio.FIRST_COMPLETED)
        if main_task in done:
            return main_task.result()
        helper = done.pop()
        raise RuntimeError(f"{helper.get_name()} stopped") from helper.exception()
    finally:
        await _finish(main_task, 0)
