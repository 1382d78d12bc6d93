"""The drawing of the stream: every variant of every kind of scenario, the same on every run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.faults.hostile.coins import coin_scenario, funding
from tests.faults.hostile.limits import big_inputs, unreadable_scenario
from tests.faults.hostile.malformed import MUTATIONS, malformed_scenario
from tests.faults.hostile.model import KINDS, PHASES, Input
from tests.faults.hostile.payments import (
    new_payment_scenario,
    payment_scenario,
    unknown_payment_scenario,
)
from tests.faults.hostile.resolve import resolve
from tests.faults.hostile.values import POOL

Scenario = Callable[[str, int], st.SearchStrategy[list[Input]]]
# Each kind of scenario, and how many variants it goes through (its `n`: which coin event,
# amount and follow-up; which mutation of which event type; which payment action...).
PLAN: dict[str, tuple[Scenario, int]] = {
    "coin": (coin_scenario, 60),
    "funding": (funding, len(POOL)),
    "payment": (payment_scenario, 18),
    "new payment": (new_payment_scenario, 2),
    "unknown payment": (unknown_payment_scenario, 2),
    "malformed": (malformed_scenario, len(KINDS) * len(MUTATIONS)),
}


def draw_scenarios(per_variant: int, unreadable_batches: int) -> list[list[Input]]:
    """`per_variant` scenarios of every variant of every kind, drawn the same way on every
    run (so CI reproduces a failure); the first of each is Hypothesis' simplest one. Each
    unreadable batch costs a producer process: `unreadable_batches` of them."""
    drawn: list[list[Input]] = []
    for scenario, variants in PLAN.values():
        for n in range(variants):
            _draw(scenario, n, per_variant, drawn)
    for n in range(unreadable_batches):
        _draw(unreadable_scenario, n, 1, drawn)
    return drawn


def _draw(scenario: Scenario, n: int, examples: int, drawn: list[list[Input]]) -> None:
    """`examples` of `scenario`'s variant `n`, in a Hypothesis run of their own: Hypothesis
    wants the shape of what it draws to depend on its own choices only."""

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        drawn.append(data.draw(scenario(f"h{len(drawn)}", n)))

    collect()


@dataclass
class Stream:
    inputs: list[Input]  # in send order
    statuses: dict[str, str]  # the status every payment must end in

    def composition(self) -> Counter[str]:
        return Counter(i.kind for i in self.inputs)


def draw_stream(per_variant: int, unreadable_batches: int) -> Stream:
    """The whole stream, in send order, every input's outcome resolved."""
    scenarios = draw_scenarios(per_variant, unreadable_batches)
    drawn = [i for scenario in scenarios for i in scenario] + big_inputs("big")
    ordered = [i for phase in PHASES for i in drawn if i.phase == phase]
    return Stream(ordered, resolve(ordered))
