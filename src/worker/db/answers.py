"""Answers kept by event (`worker.core.answers`): read them for a batch, keep the new ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from worker.core import cloudevents
from worker.core.answers import Answers, EventKey
from worker.core.messages import OutgoingMessage
from worker.core.results import derived_id
from worker.db.queries import sql
from worker.errors import ConcurrentWriteError

if TYPE_CHECKING:
    from worker.db import Connection


def answer_id(event: EventKey) -> str:
    return derived_id("event-answer", *event)


async def known_answers(conn: Connection, events: Iterable[EventKey]) -> Answers:
    """The answers kept for `events`; call it after locking what the events are about, so that
    a concurrent batch holding the same event has committed its answer or not begun."""
    ids = {answer_id(event): event for event in events}
    if not ids:
        return {}
    rows = await conn.fetch(sql("answers_known"), list(ids))
    return {
        ids[str(row["answer_id"])]: OutgoingMessage(
            topic=row["result_topic"],
            key=row["result_key"],
            value=row["result_value"],
            headers=tuple(cloudevents.structured_headers()),
        )
        for row in rows
    }


async def record_answers(conn: Connection, answers: Answers) -> None:
    if not answers:
        return
    events, messages = list(answers), list(answers.values())
    kept = await conn.fetchval(
        sql("answers_record"),
        [answer_id(event) for event in events],
        [kind for kind, _, _ in events],
        [source for _, source, _ in events],
        [event_id for _, _, event_id in events],
        [m.topic for m in messages],
        [m.key for m in messages],
        [m.value for m in messages],
    )
    if kept != len(answers):
        raise ConcurrentWriteError("an event was answered by another worker meanwhile")
