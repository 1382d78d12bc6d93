"""The broker's ACLs, as `payment-worker kafka-acls` prints them, against the real broker's
SASL/SCRAM listener: the worker runs as its own principal, and only the admin console may
write the privileged requests and only the webhook ingress the provider callbacks; every other
write is refused by the broker itself."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import TopicAuthorizationFailedError

from stack.settings import env as local_stack_env
from tests.conftest import Stack
from tests.e2e.test_admin_commands import command as run_command
from tests.events import adjustment, completed, mock_webhook, refund_request, send
from tests.kafka import read_all
from tests.support import STACK
from tests.worker_process import running_worker, worker_env
from worker.acls import ADMIN_TOPICS, WEBHOOK_TOPICS, Principals, acl_commands
from worker.core.topics import DLQ_TOPIC

MECHANISM = "SCRAM-SHA-512"
ROLES = ("worker", "admin-console", "webhook-ingress", "services", "readers")
OPERATOR, REPLAYER = "operator", "replayer"
USERS = (*ROLES, OPERATOR, REPLAYER, "nobody")  # "nobody" has credentials and no ACL at all


def stack_tool(*arguments: str) -> None:
    done = subprocess.run([STACK, *arguments], check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"scripts/stack {arguments[0]} failed: {done.stderr[-2000:]}"


def stack_tools(name: str, commands: Iterable[Sequence[str]]) -> None:
    """`scripts/stack NAME` once per command, one after another (two at once failed once, on
    a fresh clone)."""
    for command in commands:
        stack_tool(name, *command)


@pytest.fixture
def sasl_listener(stack: Stack) -> str:
    address = os.environ.get("KAFKA_SASL_LISTENER") or local_stack_env(os.environ).get(
        "KAFKA_SASL_LISTENER"
    )
    assert address, "this test needs the local stack's broker and its SASL listener"
    return address


@pytest.fixture
def users() -> Iterator[dict[str, tuple[str, str]]]:
    """A SCRAM user per role, unique to this test: name and password; deleted afterwards."""
    run = uuid.uuid4().hex[:8]
    made = {role: (f"{role}-{run}", secrets.token_urlsafe(18)) for role in USERS}
    stack_tools("kafka-configs", (
        ("--alter", "--entity-type", "users", "--entity-name", name,
         "--add-config", f"{MECHANISM}=[password={password}]")
        for name, password in made.values()
    ))  # fmt: skip
    yield made
    stack_tools("kafka-configs", (
        ("--alter", "--entity-type", "users", "--entity-name", name, "--delete-config", MECHANISM)
        for name, _ in made.values()
    ))  # fmt: skip


def principal(user: tuple[str, str]) -> str:
    return f"User:{user[0]}"


def as_user(env: dict[str, str], user: tuple[str, str]) -> dict[str, str]:
    """The worker's settings with another principal's credentials."""
    return {**env, "KAFKA_SASL_USERNAME": user[0], "KAFKA_SASL_PASSWORD": user[1]}


def credentials(user: tuple[str, str]) -> dict[str, str]:
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": MECHANISM,
        "sasl_plain_username": user[0],
        "sasl_plain_password": user[1],
    }


async def test_only_the_owners_may_write_privileged_topics_and_the_worker_runs_as_its_own(
    stack: Stack,
    sasl_listener: str,
    users: dict[str, tuple[str, str]],
    empty_db: str,
    tmp_path: Path,
) -> None:
    name, password = users["worker"]
    env = worker_env(
        empty_db,
        sasl_listener,
        KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        KAFKA_SASL_MECHANISM=MECHANISM,
        KAFKA_SASL_USERNAME=name,
        KAFKA_SASL_PASSWORD=password,
        PAYMENT_WEBHOOK_SECRET_MOCK="whsec_acl_test_secret",
    )
    prefix, group = env["KAFKA_TOPIC_PREFIX"], env["KAFKA_CONSUMER_GROUP"]
    principals = Principals(
        *(principal(users[role]) for role in ROLES),
        readers_group=f"r{group}",
        operator=principal(users[OPERATOR]),
        replayer=principal(users[REPLAYER]),
    )
    commands = acl_commands(principals, prefix, group)
    stack_tools("kafka-acls", commands)
    try:
        async with AsyncExitStack() as resources:
            worker = await resources.enter_async_context(running_worker(env, tmp_path))
            await worker.wait_ready()  # it made its topics and joined its group as itself

            async def producer(role: str) -> AIOKafkaProducer:
                made = AIOKafkaProducer(
                    bootstrap_servers=sasl_listener, acks="all", **credentials(users[role])
                )
                await made.start()
                resources.push_async_callback(made.stop)
                return made

            admin, ingress, service, operator, replayer, nobody = [
                await producer(role)
                for role in (
                    "admin-console", "webhook-ingress", "services", OPERATOR, REPLAYER, "nobody"
                )
            ]  # fmt: skip
            as_worker = await producer("worker")

            # Allowed writes reach the worker, which answers them.
            await send(admin, prefix, "coins.adjustment.requested", adjustment("a-1", "s-1", 40),
                       key="s-1")  # fmt: skip
            await send(service, prefix, "course.completed", completed("s-1", "c-1"), key="s-1")
            webhook = mock_webhook("pp-unknown", "succeeded", "whsec_acl_test_secret")
            await send(ingress, prefix, "payment.webhook.received", webhook, key="pp-unknown")
            credited = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=2)
            assert len(credited) == 2

            # Every other write to a privileged topic is refused by the broker, and so is a
            # forged result (a payment.confirmed would unlock a course without payment), and
            # anything by a user with no ACL.
            refund = refund_request("r-1", "p-1")
            attempts = [
                *(
                    (who, topic)
                    for topic in ADMIN_TOPICS
                    for who in (ingress, service, as_worker, operator, replayer)
                ),
                *(
                    (who, topic)
                    for topic in WEBHOOK_TOPICS
                    for who in (admin, service, as_worker, operator, replayer)
                ),
                *(
                    (who, "payment.confirmed")
                    for who in (admin, ingress, service, operator, nobody)
                ),
                (nobody, "course.completed"),
            ]
            for who, topic in attempts:
                data = refund if topic == "payment.refund.requested" else webhook
                with pytest.raises(TopicAuthorizationFailedError):
                    await asyncio.wait_for(send(who, prefix, topic, data, key="s-1"), 30)
            # The worker did not see any of them: one credit each, as before.
            await asyncio.sleep(1)
            again = await read_all(stack.kafka_bootstrap, prefix + "coins.credited", at_least=2)
            assert len(again) == 2

            # The operator's commands: status, and the dead letters read, as the operator; a
            # service's letter replayed as the replayer. The operator may not replay, and the
            # services' own principal may not read the dead letters.
            bad = {"student_id": "s-2", "course_id": "c-2"}  # no completed_at
            at = await send(service, prefix, "course.completed", bad, key="s-2")
            await read_all(stack.kafka_bootstrap, prefix + DLQ_TOPIC, at_least=1)
            as_operator = as_user(env, users[OPERATOR])
            shown = await run_command(as_operator, "status")
            assert shown.code == 0, shown.err
            assert f"group {group}: Stable, 1 member" in shown.out
            source = f"{prefix}course.completed:{at.partition}:{at.offset}"
            listed = await run_command(as_operator, "dlq", "list")
            assert (listed.code, [line.split("\t")[0] for line in listed.out]) == (0, [source])
            refused = await run_command(as_operator, "dlq", "replay")
            assert (refused.code, refused.out) == (1, []), refused.err
            assert "not authorized to write the source topic" in refused.err[-1]
            replayed = await run_command(as_user(env, users[REPLAYER]), "dlq", "replay")
            assert (replayed.code, replayed.out) == (0, [f"replayed {source}"]), replayed.err
            unread = await run_command(as_user(env, users["services"]), "dlq", "list")
            assert (unread.code, unread.out, len(unread.err)) == (1, [], 1)
            assert await worker.stop() == 0, worker.log_tail()
    finally:
        stack_tools(
            "kafka-acls",
            (
                [*("--remove" if a == "--add" else a for a in command), "--force"]
                for command in commands
            ),
        )
