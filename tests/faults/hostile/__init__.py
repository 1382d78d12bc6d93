"""A hostile stream: Hypothesis-drawn inputs of every kind, each with the one outcome it must get.

`draw_stream` draws scenarios (a few related inputs each: a coin event with its duplicates,
redeliveries and conflicts; a payment's life; one malformed record...) and `resolve` works out,
for every input, either that it must be dead-lettered or which results it may get.

The stream comes in three phases, each sent once the worker has answered the one before:
(1) payments are opened and some wallets funded, (2) webhooks, coin events, more payment
requests, (3) refunds. So whether a webhook or a refund finds its payment never depends on the
order in which the worker reads different topics, which it does not promise. Within a phase,
an input whose outcome depends on an earlier one shares its topic and key with it (one
partition, in order); where an outcome depends on other topics (a debit on the credits before
it), every result it could get is allowed.

Every variant of every kind of scenario (`PLAN`: which event type, amount and follow-up; which
mutation of which event type; which payment action...) is drawn a fixed number of times, so
that every run covers all of them; Hypothesis draws everything else (ids, amounts, spellings,
encodings...), the same way on every run.

Where things live: `model` (inputs, facts, expected results), `values` (ids, amounts...),
`envelope` (CloudEvents spellings and encodings), `coins`, `webhooks`, `payments`, `malformed`
and `limits` (the scenarios), `resolve` (what each input must get), `drawing` (the stream).
"""

from tests.faults.hostile.drawing import Stream, draw_stream
from tests.faults.hostile.model import (
    COIN_MAX,
    JSON_SAFE_MAX,
    PHASES,
    PROVOKED,
    WEBHOOK_SECRET,
    Input,
    Label,
    labels_of,
)

__all__ = [
    "COIN_MAX",
    "JSON_SAFE_MAX",
    "PHASES",
    "PROVOKED",
    "WEBHOOK_SECRET",
    "Input",
    "Label",
    "Stream",
    "draw_stream",
    "labels_of",
]
