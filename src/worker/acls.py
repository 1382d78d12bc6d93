"""The Kafka ACLs a deployment needs: who may write and read which of the worker's topics.

Money moves on a few of them, so only their owners may write them: an admin console the three
privileged requests (`coins.adjustment.requested`, `payment.refund.requested`,
`catalog.item.upserted`), the webhook
ingress the provider callbacks (`payment.webhook.received`). The worker reads every input and
writes only results and dead letters. An operator reads the dead letters; a replayer also
re-sends those of the services' topics. `payment-worker kafka-acls` prints these as `kafka-acls`
commands; `tests/e2e/test_kafka_acls.py` applies the same commands to a real broker and checks
that every other write is refused.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS, with_prefix

ADMIN_TOPICS: tuple[str, ...] = (
    "coins.adjustment.requested",
    "payment.refund.requested",
    "catalog.item.upserted",
)
WEBHOOK_TOPICS: tuple[str, ...] = ("payment.webhook.received",)
# What the platform's other services send. Named, not derived: a new input type gets an owner
# by decision (tests/unit/test_acls.py checks that every input has exactly one).
SERVICE_TOPICS: tuple[str, ...] = (
    "course.completed",
    "referral.succeeded",
    "coins.redemption.requested",
    "payment.requested",
)


@dataclass(frozen=True, slots=True)
class Principals:
    """Kafka principals (`User:name`) of the worker and of each kind of producer."""

    worker: str
    admin_console: str
    webhook_ingress: str
    services: str
    # A downstream service that consumes the results (one per consuming service), in its group.
    readers: str
    readers_group: str = "payment-results"
    # Who runs the admin commands (`payment-worker status`, `dlq list|show`): reads only.
    operator: str = "User:payment-operator"
    # Who replays dead letters (`payment-worker dlq replay`): it may also write the services'
    # topics, as the services do, so its credentials are handed out for a replay only.
    replayer: str = "User:payment-replayer"


def acl_commands(principals: Principals, prefix: str, group: str) -> list[list[str]]:
    """`kafka-acls` arguments (after `--bootstrap-server` and its credentials) granting exactly
    what each principal needs on topics named with `prefix`, the worker's consumer group
    `group` included. Anything not granted is refused (`allow.everyone.if.no.acl.found=false`):
    nobody but the worker writes a result, and nobody but its owner writes an input."""

    def grant(principal: str, operations: tuple[str, ...], topics: tuple[str, ...]) -> list[str]:
        arguments = ["--add", "--allow-principal", principal]
        for operation in operations:
            arguments += ["--operation", operation]
        for topic in with_prefix(prefix, topics):
            arguments += ["--topic", topic]
        return arguments

    everything = (*INPUT_TOPICS, *OUTPUT_TOPICS, DLQ_TOPIC)
    return [
        # The worker consumes every input in its group...
        [*grant(principals.worker, ("Read", "Describe"), INPUT_TOPICS), "--group", group],
        # ...publishes results and dead letters (idempotently: WRITE is enough since Kafka 3.0)...
        grant(principals.worker, ("Write",), (*OUTPUT_TOPICS, DLQ_TOPIC)),
        # ...creates the topics that are missing at start, and checks the settings of those
        # that exist (a webhook topic keeping the producer's time is named at WARNING).
        grant(principals.worker, ("Create", "Describe", "DescribeConfigs"), everything),
        grant(principals.admin_console, ("Write", "Describe"), ADMIN_TOPICS),
        grant(principals.webhook_ingress, ("Write", "Describe"), WEBHOOK_TOPICS),
        grant(principals.services, ("Write", "Describe"), SERVICE_TOPICS),
        [
            *grant(principals.readers, ("Read", "Describe"), OUTPUT_TOPICS),
            "--group",
            principals.readers_group,
        ],
        # An operator sees the worker's group and the inputs' offsets (`status`) and reads the
        # dead letters (`dlq list|show`)...
        [*grant(principals.operator, ("Describe",), (*INPUT_TOPICS, DLQ_TOPIC)), "--group", group],
        grant(principals.operator, ("Read",), (DLQ_TOPIC,)),
        # ...and a replayer reads them too and re-sends those of the services' topics (`dlq
        # replay`). Never the privileged or webhook ones: their owners send them again.
        grant(principals.replayer, ("Describe",), (*INPUT_TOPICS, DLQ_TOPIC)),
        grant(principals.replayer, ("Read",), (DLQ_TOPIC,)),
        grant(principals.replayer, ("Write",), SERVICE_TOPICS),
    ]


def shell_lines(commands: list[list[str]], tool: str = "kafka-acls.sh") -> list[str]:
    """The commands as shell lines, `--bootstrap-server` and `--command-config` left to fill."""
    return [
        f'{tool} --bootstrap-server "$KAFKA" --command-config "$ADMIN_CONFIG" '
        + " ".join(shlex.quote(argument) for argument in command)
        for command in commands
    ]
