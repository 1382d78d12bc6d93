"""Answers kept by event (`worker.core.answers`): read them for a batch, keep the new ones."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from worker.core import cloudevents
from worker.core.answers import Answers, EventKey
from worker.core.messages import OutgoingMessage
from worker.core.results import derived_id
from worker.db.queries import Group, sql, unnest_all
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
    rows = await conn.fetch(sql("answers_known"), event_ids(wanted))
    return answers_found(wanted, rows)


def event_ids(events: Iterable[EventKey]) -> list[str]:
    """The ids to look answers up by (`answers_known`, `coins_read`, `payments_read`)."""
    return list({event_id for _, _, event_id in events})


def answers_found(wanted: Collection[EventKey], rows: Iterable[Any]) -> Answers:
    """The answers among `rows` (event type, source and id, result topic, key and value) that
    are answers to `wanted`: the same id from another source or of another type is not one."""
    found: Answers = {}
    for event_type, event_source, event_id, topic, key, value in rows:
        event = (event_type, event_source, event_id)
        if event in wanted:
            found[event] = OutgoingMessage(
                topic=topic, key=key, value=value, headers=tuple(cloudevents.structured_headers())
            )
    return found


def answer_rows(answers: Answers) -> Group:
    """`answers` as the rows of an `event_answers` unnest (`answers_record`, `coins_write`,
    `payments_write`)."""
    return list(answers.items()), _ANSWER_COLUMNS


_ANSWER_COLUMNS: dict[str, Callable[[Any], object]] = {
    "answer_id": lambda item: answer_id(item[0]),
    "event_type": lambda item: item[0][0],
    "event_source": lambda item: item[0][1],
    "event_id": lambda item: item[0][2],
    "result_topic": lambda item: item[1].topic,
    "result_key": lambda item: item[1].key,
    "result_value": lambda item: item[1].value,
}


async def record_answers(conn: Connection, answers: Answers) -> None:
    if not answers:
        return
    kept = await conn.fetchval(
        sql("answers_record"), *unnest_all("answers_record", answer_rows(answers))
    )
    if kept != len(answers):
        raise ConcurrentWriteError("an event was answered by another worker meanwhile")
