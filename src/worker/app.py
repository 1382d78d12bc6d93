"""The composition root: wires settings, pool, Kafka clients, metrics and the sidecar."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import hmac
import logging
import signal
from datetime import timedelta
from typing import Any

import asyncpg

from worker.core.assertions import AdminAssertions
from worker.core.gateway import Gateway
from worker.core.handlers import Policies, Rewards
from worker.core.payments import PaymentDefaults
from worker.core.signatures import WebhookVerifier
from worker.core.topics import (
    ALL_TOPICS,
    COIN_INPUT_TOPICS,
    DLQ_TOPIC,
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    with_prefix,
)
from worker.core.types import Provider
from worker.db.migrate import apply_migrations_in
from worker.db.outbox import Outbox
from worker.db.pool import open_pool
from worker.expiry import COIN_LOTS, PAYMENTS, Sweeper
from worker.gateway_calls import GatewayCaller
from worker.gateways.mock import MockGateway, UnconfiguredGateway
from worker.gateways.razorpay import RazorpayGateway
from worker.gateways.stripe import StripeGateway
from worker.messaging.clients import (
    ensure_topics,
    make_consumer,
    make_producer,
    start_with_retry,
)
from worker.messaging.consume import ConsumeLoop
from worker.messaging.outbox import OutboxRelay
from worker.messaging.publish import ResultPublisher
from worker.messaging.sender import Sender
from worker.metrics import Metrics, new_registry
from worker.pipeline import Pipeline
from worker.settings import Settings, read_assertion_keys, read_rules, webhook_secrets
from worker.settings import jwt_secret as token_secret
from worker.sidecar.api import ReadApi
from worker.sidecar.app import Backends, create_app
from worker.sidecar.auth import TokenRules
from worker.sidecar.cursors import Cursors
from worker.sidecar.limits import RateLimiter
from worker.sidecar.readiness import Readiness
from worker.sidecar.server import embedded_server, serve
from worker.supervise import alongside, causes

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def migrate(settings: Settings) -> int:
    """Apply the migrations and exit: the `migrate` command."""
    pool = await open_pool(settings.database_url.get_secret_value(), min_size=1, max_size=1)
    try:
        applied = await apply_migrations_in(pool)
    finally:
        await pool.close()
    log.info("migrations up to date", extra={"action": "migrate", "applied": len(applied)})
    return 0


async def run(settings: Settings) -> int:
    """Run the worker and its sidecar until SIGTERM or SIGINT: the `run` command.

    One task tree (`worker.supervise`): the worker, and the sidecar beside it from the first
    moment. A task that dies stops the rest and the process exits 1, saying why. On a signal
    the batch in hand is finished (for up to WORKER_SHUTDOWN_GRACE_SECONDS), then everything
    closes in reverse order of opening, the sidecar last."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    metrics = Metrics(new_registry())
    backends: asyncio.Future[Backends] = loop.create_future()
    rules = token_rules(settings)
    app = create_app(backends, metrics, rules, RateLimiter(settings.sidecar_rate_limit_per_minute))
    sidecar = embedded_server(
        app,
        settings.sidecar_host,
        settings.payment_service_port,
        shutdown_seconds=settings.worker_shutdown_grace_seconds,
    )
    exit_code = 0
    try:
        try:
            async with asyncio.timeout(None) as deadline:
                for sig in _SIGNALS:
                    loop.add_signal_handler(
                        sig, _stopping, stop, deadline, settings.worker_shutdown_grace_seconds
                    )
                await alongside(
                    _work(settings, metrics, backends, cursor_keys(rules), stop),
                    {"sidecar": lambda: serve(sidecar)},
                )
        except TimeoutError:
            log.warning(
                "stopping took longer than WORKER_SHUTDOWN_GRACE_SECONDS: cut short",
                extra={"action": "shutdown"},
            )
        finally:
            for sig in _SIGNALS:  # the deadline they move is gone
                loop.remove_signal_handler(sig)
    except* Exception as crashed:
        for error in causes(crashed):  # each with its own traceback, not the group's
            log.error("stopped by an error", exc_info=error, extra={"action": "crash"})  # noqa: TRY400
        exit_code = 1
    log.info("stopped", extra={"action": "stopped", "exit_code": exit_code})
    return exit_code


async def _consume(
    consumer: Any, consume: ConsumeLoop, topics: tuple[str, ...], stop: asyncio.Event
) -> None:
    """Join the group and consume until `stop`; the consumer is closed first on the way out,
    so its partitions go to their next owner while the rest closes."""
    if stop.is_set():  # stopped while starting: joining the group would only cost a rebalance
        return
    try:
        await start_with_retry(consumer, "consumer")
        _tune_the_collector()
        log.info("worker started", extra={"action": "started", "topics": list(topics)})
        await consume.run(stop)
    finally:
        await _close(consumer, "consumer")


# The young generation is collected once this many more container objects were made than freed
# (Python's default: 700; 2,000 from Python 3.13). A batch keeps each event's decoded input,
# decisions and results alive until it is published: at 700, a young collection ran about seven
# times per batch of 500 (Python 3.11), each traversing the batch so far and moving it into the
# older generations, whose collections traversed it again. Over 100,000 events the collector
# took about 1.05 s of the worker's CPU at 700 and 0.14 s at 20,000 (docs/performance.md).
# Python 3.14's collector counts differently: revisit this when the project supports it.
_YOUNG_COLLECTION_AFTER = 20_000

# With collections that rare, garbage in reference cycles could wait long (a worker that is idle,
# or whose batches free what they make, allocates little on balance): a failed attempt's
# traceback holds its frame, and the batch in it, until a collection finds it. The count is of
# objects, not bytes, so those few objects may hold much. So every generation not frozen is also
# collected this often: a full collection, since a cycle still in use at one collection moves to
# the oldest generation, where only a full one finds it once dropped.
_COLLECT_EVERY_SECONDS = 10.0


def _tune_the_collector() -> None:
    """Leave what start-up built (modules, schemas, clients) out of every later collection, and
    collect the young generation every few thousand events, not several times in each batch.

    A full collection scans every tracked object; with the start-up heap in it, each took up to
    56 ms here, every few seconds under load: a pause every event in flight waits out (it was
    most of the latency's p99). What is left to scan is what processing creates and keeps.
    The cost: a start-up object that later becomes garbage in a reference cycle (a producer
    replaced after a refusal, a pool connection closed when idle) is never collected. That is
    bounded, once per process.
    """
    gc.collect()
    gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(young, _YOUNG_COLLECTION_AFTER), older, oldest)


async def _collect_garbage(every_seconds: float = _COLLECT_EVERY_SECONDS) -> None:
    """Collect every generation not frozen every `every_seconds`, whatever the count of
    allocations says (`_COLLECT_EVERY_SECONDS`). With the start-up heap frozen that is a few
    milliseconds: the review helper measured 0.5 ms with nothing in flight, and 6.6 to 7.2 ms
    with 100,000 young objects alive."""
    while True:
        await asyncio.sleep(every_seconds)
        gc.collect()


def _stopping(stop: asyncio.Event, deadline: asyncio.Timeout, grace_seconds: float) -> None:
    """A signal: consume no further batch, and give the one in hand `grace_seconds`."""
    if not stop.is_set():
        log.info("stopping", extra={"action": "shutdown"})
        stop.set()
        deadline.reschedule(asyncio.get_running_loop().time() + grace_seconds)


async def _close(client: Any, name: str) -> None:
    """Stop an aiokafka client; a failure to stop must not hide why the worker is stopping."""
    try:
        await client.stop()
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - logged, then ignored
        log.warning("%s did not stop cleanly: %r", name, exc, extra={"action": "close"})


def policies(settings: Settings) -> Policies:
    """The rewards, webhook secrets and admin assertion keys the handlers apply."""
    keys: dict[Provider, tuple[bytes, ...]] = {
        "mock": webhook_secrets(settings.payment_webhook_secret_mock),
        "stripe": webhook_secrets(settings.payment_webhook_secret_stripe),
        "razorpay": webhook_secrets(settings.payment_webhook_secret_razorpay),
    }
    return Policies(
        rewards=Rewards(
            settings.coin_reward_course_completion,
            settings.coin_reward_referral,
            settings.coin_max_amount,
        ),
        webhooks=WebhookVerifier(keys, settings.payment_webhook_tolerance_seconds),
        assertions=(
            None
            if settings.admin_assertion_public_keys is None
            else AdminAssertions(read_assertion_keys(settings.admin_assertion_public_keys))
        ),
        rules=(
            None
            if settings.coin_rules_file is None
            else read_rules(settings.coin_rules_file, settings.coin_max_amount)
        ),
        coin_lifetime=(
            timedelta(days=settings.coin_expiry_days) if settings.coin_expiry_days else None
        ),
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


def jwt_secret(settings: Settings) -> str:
    """The read API's token secret; SIDECAR_DEV_MODE's public one is said out loud."""
    if settings.sidecar_jwt_secret is None:
        log.warning(
            "SIDECAR_DEV_MODE: read-API tokens use the public development secret",
            extra={"action": "dev_mode"},
        )
    return token_secret(settings)


def token_rules(settings: Settings) -> TokenRules:
    """What the read API's tokens must satisfy: the secret (and the previous one during a
    rotation), the issuer and audience when set, the maximum lifetime."""
    previous = settings.sidecar_jwt_previous_secret
    return TokenRules(
        secrets=(jwt_secret(settings), *([previous.get_secret_value()] if previous else [])),
        issuer=settings.sidecar_jwt_issuer,
        audience=settings.sidecar_jwt_audience,
        max_lifetime=timedelta(minutes=settings.sidecar_jwt_max_lifetime_minutes),
    )


def cursor_keys(rules: TokenRules) -> tuple[bytes, ...]:
    """The read API's cursor keys, derived from its token secrets: the current one signs, and
    cursors issued under the previous one stay valid during a rotation."""
    return tuple(
        hmac.new(secret.encode(), b"payment-worker cursors", hashlib.sha256).digest()
        for secret in rules.secrets
    )


async def _work(
    settings: Settings,
    metrics: Metrics,
    backends: asyncio.Future[Backends],
    cursors_keys: tuple[bytes, ...],
    stop: asyncio.Event,
) -> None:
    """Bring up the pools, schema, topics and clients; hand the sidecar what it answers from;
    consume until `stop` with the relay, the sweep and the gateway calls beside; close all in
    reverse order."""
    dsn = settings.database_url.get_secret_value()
    prefix = settings.kafka_topic_prefix
    async with contextlib.AsyncExitStack() as stack:
        pool = await open_pool(dsn, min_size=2, max_size=settings.worker_db_pool_size)
        stack.push_async_callback(pool.close)
        await apply_migrations_in(pool)
        # The read API's own pool: read-only, with a statement timeout, apart from the consumer's.
        read_pool = await open_pool(
            dsn,
            min_size=1,
            max_size=settings.sidecar_db_pool_size,
            statement_timeout_ms=settings.sidecar_statement_timeout_ms,
            read_only=True,
            name="payment-worker-reads",
        )
        stack.push_async_callback(read_pool.close)

        # The parts, made without I/O; the sidecar answers from them while Kafka is awaited.
        outbox = Outbox(pool)
        relay_sender = Sender(
            lambda: make_producer(settings), topic_prefix=prefix, topics=(*OUTPUT_TOPICS, DLQ_TOPIC)
        )
        stack.push_async_callback(relay_sender.close)
        relay = OutboxRelay(outbox, relay_sender, metrics)
        # The consume loop's own producer: the relay replaces its one after a refusal.
        batch_sender = Sender(
            lambda: make_producer(settings, linger_ms=0),
            topic_prefix=prefix,
            topics=(*OUTPUT_TOPICS, DLQ_TOPIC),
        )
        stack.push_async_callback(batch_sender.close)
        publisher = ResultPublisher(batch_sender, outbox, metrics)
        payment_sweeper = Sweeper(
            pool,
            metrics,
            PAYMENTS,
            interval_seconds=settings.payment_expiry_interval_seconds,
            on_committed=relay.wake,
        )
        mock = MockGateway(settings.payment_mock_url_base)
        caller = GatewayCaller(
            pool,
            lambda: asyncpg.connect(dsn, server_settings={"application_name": "payment-worker"}),
            gateways(settings, mock),
            metrics,
            timeout_seconds=settings.payment_gateway_timeout_seconds,
            concurrency=settings.payment_gateway_concurrency,
            on_committed=relay.wake,
        )
        pipeline = Pipeline(
            pool,
            metrics,
            policies(settings),
            payment_defaults(settings, mock),
            prefix,
            on_durable=relay.wake,
            on_gateway_calls=caller.wake,
        )
        consumer = make_consumer(settings)
        topics = with_prefix(prefix, INPUT_TOPICS)
        consume = ConsumeLoop(
            consumer,
            topics,
            pipeline.process,
            publisher.publish,
            metrics,
            ordered_together=with_prefix(prefix, COIN_INPUT_TOPICS),
            coin_results_queued=outbox.coin_results_queued,
            dead_letter=pipeline.dead_letter_unreadable,
            max_records=settings.worker_batch_max_records,
            max_wait_ms=settings.worker_batch_max_wait_ms,
            failpoint_after_db_commit=settings.worker_failpoint_after_db_commit,
            lanes=settings.worker_concurrent_batches,
        )
        stack.push_async_callback(_close, consumer, "consumer")
        # Runs whatever COIN_EXPIRY_DAYS says now: lots made while it was set keep their
        # deadlines (with none, it finds nothing). Each lane expires its own partitions' lots.
        coin_sweeper = Sweeper(
            pool,
            metrics,
            COIN_LOTS,
            interval_seconds=settings.coin_expiry_interval_seconds,
            on_committed=relay.wake,
            shares=consume.between_batches,
        )
        readiness = Readiness(pool, consume.in_group, metrics)
        backends.set_result(
            Backends(
                readiness=readiness,
                read_api=ReadApi(read_pool, Cursors(*cursors_keys)),
            )
        )

        await ensure_topics(settings, with_prefix(prefix, ALL_TOPICS))
        await relay_sender.start()
        await batch_sender.start()
        await alongside(
            _consume(consumer, consume, topics, stop),
            {
                "outbox-relay": relay.run,
                "outbox-backlog": relay.report_backlog,
                "expiry-sweep": payment_sweeper.run,
                "coin-expiry-sweep": coin_sweeper.run,
                "gateway-calls": caller.run,
                "consumer-lag": consume.report_lag,
                "readiness": lambda: _keep_current(readiness),
                "garbage-collection": _collect_garbage,
            },
        )


async def _keep_current(readiness: Readiness, every_seconds: float = 5.0) -> None:
    """Refresh `payment_worker_ready` every few seconds, whether or not `/readyz` is asked."""
    while True:
        await readiness()
        await asyncio.sleep(every_seconds)
