"""Kafka clients configured the one way the worker uses them."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from worker.core.messages import MAX_MESSAGE_BYTES
from worker.core.topics import DLQ_TOPIC, OUTPUT_TOPICS, event_type
from worker.retry import transient_retry
from worker.settings import Settings

log = logging.getLogger(__name__)


def connection(settings: Settings) -> dict[str, Any]:
    """Where and how every Kafka client of the worker connects: the brokers, the security
    protocol and, as it asks, the SASL credentials and the TLS context (CONTRACT section 8;
    `Settings` has checked that the set is complete)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password else None,
        }
    if settings.kafka_security_protocol.endswith("SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
        )
    return options


def make_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A group member that never commits on its own: offsets go only after the database."""
    return AIOKafkaConsumer(
        **connection(settings),
        group_id=settings.kafka_consumer_group,
        client_id="payment-worker",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=settings.worker_batch_max_records,
        # A batch may wait on a database that is briefly down; don't get evicted for that.
        max_poll_interval_ms=300_000,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=max(1_000, settings.kafka_session_timeout_ms // 10),
        # Range gives one member partition p of every input topic (their partition counts are
        # equal), so all of one student's coin events meet in one worker, which publishes their
        # results in the order it decided them. Range alone: members offering two assignors
        # (range and round robin, as the version before offered) rebalanced without end on
        # Kafka 4.4 in 4 of 6 two-member starts measured, `consumer.start()` never returning
        # (aiokafka 0.14; the broker logs "Updating metadata for member ... during
        # CompletingRebalance" every 100 ms); with range alone, 8 of 8 formed at once.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


def make_producer(settings: Settings, *, linger_ms: int = 5) -> AIOKafkaProducer:
    """Idempotent and fully acknowledged: a retried send is never written twice.

    `linger_ms` holds a message given to `send` for more to join it (the Sender's own batches
    are closed when handed over, and go at once). 0 suits a caller that sends a whole batch
    before it yields to the event loop: nothing waits for more."""
    return AIOKafkaProducer(
        **connection(settings),
        client_id="payment-worker",
        enable_idempotence=True,
        acks="all",
        linger_ms=linger_ms,
        request_timeout_ms=30_000,
        # Dead letters are cut to fit this (worker.core.records.dead_letter).
        max_request_size=MAX_MESSAGE_BYTES,
        max_batch_size=PRODUCER_BATCH_BYTES,
    )


# The most one producer batch holds. aiokafka sends one request at a time to a broker, with at
# most one batch per partition, and takes a partition's next batch only once the one before is
# in a request: at its default of 16 KiB a batch's 500 results of about 450 bytes took three
# requests one after the other for each partition. At 256 KiB one holds them all: producing such
# batches cost 5 to 6 µs of the client's CPU per message against 18 to 21, and 3 to 4 µs of the
# broker's against 9 to 11 (docs/performance.md). The size counts the whole batch as the broker
# measures it against a topic's `max.message.bytes` (its header, offset and length included),
# whose default (1 MiB and 12 bytes) takes it. A topic set below it refuses such a batch whole,
# and the Sender then sends its messages again one at a time: nothing is lost, but each costs a
# round trip. The start warns of such a topic (`_warn_of_other_configs`).
PRODUCER_BATCH_BYTES = 256 * 1024
# The topics the worker publishes to.
_PUBLISHED = frozenset((*OUTPUT_TOPICS, DLQ_TOPIC))
_MAX_MESSAGE_BYTES = "max.message.bytes"


async def start_with_retry(client: Any, what: str) -> None:
    """Start an aiokafka client, waiting for the broker instead of failing."""
    async for attempt in transient_retry():
        with attempt:
            await client.start()
    log.info("kafka client started", extra={"action": "kafka_start", "client": what})


# Topic settings the worker sets when it creates a topic. Webhooks and privileged requests
# carry the broker's append time, which their producer cannot set back: a webhook signature's
# age and an admin assertion's expiry are judged by it (CONTRACT section 8; docs/security.md).
_APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    "payment.webhook.received": _APPEND_TIME,
    "coins.adjustment.requested": _APPEND_TIME,
    "payment.refund.requested": _APPEND_TIME,
    "catalog.item.upserted": _APPEND_TIME,
}


async def ensure_topics(settings: Settings, names: tuple[str, ...]) -> list[str]:
    """Create the topics that are missing; never change existing ones. Returns those created."""
    admin = AIOKafkaAdminClient(**connection(settings), client_id="payment-worker-admin")
    await start_with_retry(admin, "admin")
    prefix = settings.kafka_topic_prefix
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in names if name not in existing]
        if missing:
            factor = settings.kafka_topic_replication_factor
            # Another worker starting at the same time may have created them first.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            settings.kafka_topic_partitions,
                            factor,
                            topic_configs=TOPIC_CONFIGS.get(event_type(prefix, name), {}),
                        )
                        for name in missing
                    ]
                )
            log.info("topics created", extra={"action": "create_topics", "topics": missing})
        kept = [n for n in names if n in existing and _checked(event_type(prefix, n))]
        try:
            await _warn_of_other_configs(admin, prefix, kept)
        except Exception as exc:  # noqa: BLE001 - a check: it says so, and never stops a start
            log.warning("topic settings not checked: %r", exc, extra={"action": "check_topics"})
        return missing
    finally:
        await admin.close()


def _checked(kind: str) -> list[str]:
    """The settings the start checks of an existing topic of event type `kind`."""
    return [*TOPIC_CONFIGS.get(kind, {}), *([_MAX_MESSAGE_BYTES] if kind in _PUBLISHED else [])]


async def _warn_of_other_configs(admin: AIOKafkaAdminClient, prefix: str, names: list[str]) -> None:
    """Say at WARNING which existing topics lack the settings the worker would have given them
    (`TOPIC_CONFIGS`): on a topic that keeps the producer's time, a webhook's age and an
    assertion's expiry are judged by the event's `time`, which its producer writes. And which
    topics it publishes to refuse a producer batch of PRODUCER_BATCH_BYTES."""
    if not names:
        return
    resources = [
        ConfigResource(
            ConfigResourceType.TOPIC, name, dict.fromkeys(_checked(event_type(prefix, name)))
        )
        for name in names
    ]
    for response in await admin.describe_configs(resources):  # errors: see ensure_topics
        for name, found in _configs(response).items():
            wanted = TOPIC_CONFIGS.get(event_type(prefix, name), {})
            if found is None:
                log.warning(
                    "topic settings not checked: DescribeConfigs refused",
                    extra={"action": "check_topics", "topic": name},
                )
                continue
            for key, value in wanted.items():
                if found.get(key) != value:
                    log.warning(
                        "topic %s has %s=%s, not %s: the worker judges its records by the "
                        "event's time, which producers set (docs/security.md: kafka-configs.sh "
                        "--alter --add-config %s=%s)",
                        name, key, found.get(key), value, key, value,
                        extra={"action": "check_topics", "topic": name},
                    )  # fmt: skip
            limit = found.get(_MAX_MESSAGE_BYTES)
            if event_type(prefix, name) in _PUBLISHED and _below(limit, PRODUCER_BATCH_BYTES):
                log.warning(
                    "topic %s has max.message.bytes=%s, below the %d bytes of one producer "
                    "batch: the broker refuses such batches, and their messages then go one at a "
                    "time, a round trip each (kafka-configs.sh --alter --entity-type topics "
                    "--entity-name %s --add-config max.message.bytes=1048588)",
                    name, limit, PRODUCER_BATCH_BYTES, name,
                    extra={"action": "check_topics", "topic": name},
                )  # fmt: skip


def _below(value: str | None, least: int) -> bool:
    """Whether a numeric setting as described (None: not described) is below `least`."""
    try:
        return value is not None and int(value) < least
    except ValueError:
        return False


def _configs(response: Any) -> dict[str, dict[str, str] | None]:
    """A DescribeConfigs response as {topic: {name: value}}, None for a topic it refused."""
    found: dict[str, dict[str, str] | None] = {}
    for resource in response.to_object()["resources"]:
        if resource["error_code"]:
            found[resource["resource_name"]] = None
            continue
        entries = resource["config_entries"]
        found[resource["resource_name"]] = {e["config_names"]: e["config_value"] for e in entries}
    return found


async def partitions_of(settings: Settings, topics: Sequence[str]) -> dict[str, list[int]]:
    """The partitions of each topic that exists (listed first: asking for a missing topic by
    name could create it, on a broker that creates topics on demand)."""
    admin = AIOKafkaAdminClient(**connection(settings), client_id="payment-worker-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topics if t in existing]
        found = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in found}


def coordinator_known(consumer: AIOKafkaConsumer) -> bool:
    """Whether the consumer currently has a live group coordinator.

    aiokafka has no public call for this; its coordinator drops the id the moment a heartbeat
    or commit finds the coordinator gone, so that attribute is the honest signal.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "coordinator_id", None) is not None
