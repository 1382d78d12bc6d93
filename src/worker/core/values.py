"""`value_type`: the decorator of the value types built for every event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value_type(cls: type[T]) -> type[T]:
    """A slotted dataclass that the type checker holds frozen, as `dataclass(frozen=True)`.

    At run time it is not frozen. A frozen dataclass's `__init__` sets each field through
    `object.__setattr__`: 1.62 µs for 16 fields against 0.25 µs without (Python 3.11; 3.12 and
    3.13 alike), paid for the command, wallets, ledger entry, decision and messages of every
    event, and for a payment event's command, notification, payment rows, session and
    transition. Nothing in src assigns to one (mypy, run on src by the test command, refuses
    it), and it hashes and compares by its fields as a frozen one does."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
