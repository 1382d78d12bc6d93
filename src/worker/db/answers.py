"""Answers kept by event (`worker.core.answers`): read them for a batch, keep the new ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from worker.core import cloudevents
from worker.core.answers import Answers, EventKey
from worker.core.messages import OutgoingMessage
from worker.core.results import derived_id
from worker.db.queries import sql, unnest_arrays
from worker.errors import ConcurrentWriteError

if TYPE_CHECKING:
    from worker.db import Connection


def answer_id(event: EventKey) -> str:
    return derived_id("event-answer", *event)


async def known_answers(conn: Connection, events: Iterable[EventKey]) -> Answers:
    """The answers kept for `events`; call it after locking what the events are about, so that
    a concurrent batch holding the same event has committed its answer or not begun."""
    wanted = set(events)
    if not wanted:
        return {}
    rows = await conn.fetch(sql("answers_known"), list({event_id for _, _, event_id in wanted}))
    found: Answers = {}
    for row in rows:
        event = (row["event_type"], row["event_source"], row["event_id"])
        if event in wanted:  # the same id from another source or of another type is not it
            found[event] = OutgoingMessage(
                topic=row["result_topic"],
                key=row["result_key"],
                value=row["result_value"],
                headers=tuple(cloudevents.structured_headers()),
            )
    return found


async def record_answers(conn: Connection, answers: Answers) -> None:
    if not answers:
        return
    kept = await conn.fetchval(
        sql("answers_record"),
        *unnest_arrays(
            "answers_record",
            list(answers.items()),
            answer_id=lambda item: answer_id(item[0]),
            event_type=lambda item: item[0][0],
            event_source=lambda item: item[0][1],
            event_id=lambda item: item[0][2],
            result_topic=lambda item: item[1].topic,
            result_key=lambda item: item[1].key,
            result_value=lambda item: item[1].value,
        ),
    )
    if kept != len(answers):
        raise ConcurrentWriteError("an event was answered by another worker meanwhile")
