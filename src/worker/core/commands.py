"""From a consumed record to the command it asks for: the one dispatch over every handler."""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.coins import COIN_HANDLERS, Rewards
from worker.core.envelope import BadInputError, decode
from worker.core.ledger import CoinCommand
from worker.core.lifecycle import PaymentCommand
from worker.core.messages import Headers
from worker.core.payments import PAYMENT_HANDLERS
from worker.core.signatures import WebhookVerifier

Command = CoinCommand | PaymentCommand

# The event types the worker handles; it subscribes to exactly these topics.
HANDLED_TYPES: tuple[str, ...] = (*COIN_HANDLERS, *PAYMENT_HANDLERS)


@dataclass(frozen=True)
class Policies:
    """What handlers need from configuration: the coin rewards and the webhook secrets."""

    rewards: Rewards
    webhooks: WebhookVerifier


def command_for(kind: str, value: bytes | None, headers: Headers, policies: Policies) -> Command:
    """The command a consumed record asks for; BadInputError if it is not a valid event."""
    coin_handler = COIN_HANDLERS.get(kind)
    if coin_handler is not None:
        return coin_handler(decode(value, headers, kind), policies.rewards)
    payment_handler = PAYMENT_HANDLERS.get(kind)
    if payment_handler is not None:
        return payment_handler(decode(value, headers, kind), policies.webhooks)
    raise BadInputError(f"no handler for event type {kind!r}")
