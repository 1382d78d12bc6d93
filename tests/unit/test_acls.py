"""The ACL set (`worker.acls`): who may write what, read from the commands themselves."""

from __future__ import annotations

import shlex

import pytest

from worker.acls import ADMIN_TOPICS, SERVICE_TOPICS, WEBHOOK_TOPICS, Principals, acl_commands
from worker.cli import main
from worker.core.topics import DLQ_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS

PRINCIPALS = Principals(
    "User:w", "User:admin", "User:hooks", "User:platform", "User:r", "rg", "User:op", "User:re"
)


def grants(prefix: str = "") -> set[tuple[str, str, str]]:
    """(principal, operation, resource) for every grant of the command set."""
    found = set()
    for command in acl_commands(PRINCIPALS, prefix, "g1"):
        options = list(zip(command[1::2], command[2::2], strict=False))
        assert command[0] == "--add"
        who = next(value for flag, value in options if flag == "--allow-principal")
        operations = [value for flag, value in options if flag == "--operation"]
        resources = [
            f"{flag[2:]}:{value}" for flag, value in options if flag in ("--topic", "--group")
        ]
        found |= {(who, op, resource) for op in operations for resource in resources}
    return found


def writers(topic: str) -> set[str]:
    return {who for who, op, resource in grants() if op == "Write" and resource == f"topic:{topic}"}


def test_each_input_has_one_owner_and_the_privileged_ones_no_other_writer() -> None:
    owners = {
        **{topic: {"User:admin"} for topic in ADMIN_TOPICS},
        **{topic: {"User:hooks"} for topic in WEBHOOK_TOPICS},
        # The replayer re-sends the services' dead letters (payment-worker dlq replay).
        **{topic: {"User:platform", "User:re"} for topic in SERVICE_TOPICS},
    }
    assert sorted(owners) == sorted(INPUT_TOPICS)  # each input owned once, none forgotten
    assert len(owners) == len(ADMIN_TOPICS) + len(WEBHOOK_TOPICS) + len(SERVICE_TOPICS)
    assert {topic: writers(topic) for topic in INPUT_TOPICS} == owners


def test_only_the_worker_writes_results_and_dead_letters_and_readers_only_read() -> None:
    for topic in (*OUTPUT_TOPICS, DLQ_TOPIC):
        assert writers(topic) == {"User:w"}, topic
    theirs = {(op, resource) for who, op, resource in grants() if who == "User:r"}
    assert theirs == {
        *((op, f"topic:{topic}") for topic in OUTPUT_TOPICS for op in ("Read", "Describe")),
        ("Read", "group:rg"),
        ("Describe", "group:rg"),
    }


def test_the_worker_reads_inputs_in_its_group_and_writes_only_results_and_dead_letters() -> None:
    mine = {(op, resource) for who, op, resource in grants() if who == "User:w"}
    assert {resource for op, resource in mine if op == "Write"} == {
        f"topic:{topic}" for topic in (*OUTPUT_TOPICS, DLQ_TOPIC)
    }
    assert {resource for op, resource in mine if op == "Read"} == {
        *(f"topic:{topic}" for topic in INPUT_TOPICS),
        "group:g1",
    }


def test_topics_carry_the_prefix() -> None:
    topics = {resource for _, _, resource in grants("staging.") if resource.startswith("topic:")}
    assert topics
    assert all(resource.startswith("topic:staging.") for resource in topics)


def test_the_command_prints_shell_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kafka-acls", "--prefix", "p.", "--group", "g1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(acl_commands(PRINCIPALS, "p.", "g1"))
    assert all(shlex.split(line)[0] == "kafka-acls.sh" for line in lines)
    assert "--topic p.coins.adjustment.requested" in lines[3]
    assert "User:admin-console" in lines[3]
    assert "User:payment-results" in lines[-6]
    assert "User:payment-operator" in lines[-4]
    assert "User:payment-replayer" in lines[-1]


def test_the_operator_only_reads_and_the_replayer_writes_only_service_topics() -> None:
    def of(who: str) -> set[tuple[str, str]]:
        return {(op, resource) for principal, op, resource in grants() if principal == who}

    reading = {
        *(("Describe", f"topic:{topic}") for topic in (*INPUT_TOPICS, DLQ_TOPIC)),
        ("Read", f"topic:{DLQ_TOPIC}"),
    }
    assert of("User:op") == {*reading, ("Describe", "group:g1")}
    assert of("User:re") == {*reading, *(("Write", f"topic:{topic}") for topic in SERVICE_TOPICS)}
