"""What the traffic will be: a deterministic sequence of checkouts from a seed and a mix."""

from __future__ import annotations

import difflib
import math
import random
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

HEALTHY = "success"  # the scenario every graph has: an order id no fail_if or hang_if matches
SCENARIOS = (HEALTHY, "fail-pay", "timeout")  # the checkout graph's
DEFAULT_MIX = {HEALTHY: 90, "fail-pay": 5, "timeout": 5}


def scenarios_of(graph_scenarios: Sequence[str]) -> tuple[str, ...]:
    """A graph's traffic scenarios: ``success``, then its own (``fail_if`` / ``hang_if`` names)."""
    return (HEALTHY, *(name for name in graph_scenarios if name != HEALTHY))


def default_mix(scenarios: Sequence[str]) -> dict[str, float]:
    """90 % healthy, the other 10 % shared by the graph's scenarios (the checkout: 90/5/5)."""
    others = [name for name in scenarios if name != HEALTHY]
    if not others:
        return {HEALTHY: 100}
    return {HEALTHY: 90, **{name: 10 / len(others) for name in others}}


def mix_text(mix: Mapping[str, float]) -> str:
    """``success=90,fail-pay=5,timeout=5``: a mix as the flag takes it."""
    return ",".join(f"{name}={weight:g}" for name, weight in mix.items())


def _not_a_scenario(name: str, scenarios: Sequence[str]) -> str:
    """Why a part of ``--mix`` is refused: the scenario a typo was close to, else the form and the names."""
    close = difflib.get_close_matches(name.lower(), scenarios, n=1)
    if close:
        return f"no scenario {name!r}: did you mean {close[0]}? (scenarios {', '.join(scenarios)})"
    return f"must be SCENARIO=WEIGHT,... with scenarios {', '.join(scenarios)}"


def parse_mix(raw: str, scenarios: Sequence[str] = SCENARIOS) -> dict[str, float]:
    """``success=90,fail-pay=5,timeout=5`` -> weights; unknown scenarios and bad weights are errors."""
    mix: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in scenarios:
            raise ValueError(_not_a_scenario(name.strip() if sep else "", scenarios))
        try:
            if not weight.isascii():  # float() takes any script's digits ("\u0661" is 1)
                raise ValueError
            mix[name] = float(weight)
        except ValueError:
            raise ValueError(f"weight of {name} must be a number") from None
        if not 0 <= mix[name] < math.inf:
            raise ValueError(f"weight of {name} must be a finite number >= 0")
    if sum(mix.values()) <= 0:
        raise ValueError("at least one weight must be > 0")
    if sum(mix.values()) == math.inf:
        raise ValueError("the weights must add up to a finite number")
    return mix


ORDER_PREFIX = "ord"  # what the generator's order ids start with (a Locust worker tags its own)
INDEX_DIGITS = 6  # an order id's checkout index, zero-padded to at least this many digits


def order_id_around(scenario: str, prefix: str = ORDER_PREFIX) -> tuple[str, str]:
    """The text of an order id before and after its index digits: the same for every checkout of ``scenario``."""
    return f"{prefix}-", f"-{scenario}"


def order_id(index: int, scenario: str, prefix: str = ORDER_PREFIX) -> str:
    """``ord-000042-fail-pay``: a scenario's ``fail_if`` / ``hang_if`` matches its name in the id."""
    head, tail = order_id_around(scenario, prefix)
    return f"{head}{index:0{INDEX_DIGITS}d}{tail}"


@dataclass(frozen=True)
class Checkout:
    """One planned checkout: its position, scenario, order id, trace id, and the entry route it is sent to."""

    index: int
    scenario: str
    order_id: str
    trace_id: str
    entry: str = ""  # the entry route's name ("POST /checkout/{order_id}"); "" is the graph's first

    def headers(self) -> dict[str, str]:
        """What the checkout request carries: its trace id as ``x-request-id`` and as a W3C ``traceparent``.

        The ``traceparent`` makes the services' OpenTelemetry spans (the OTLP
        exporter's) share the truth's ``trace_id``; the parent span id is the
        generator's own request, which nothing records, so any random one does.
        """
        return {"x-request-id": self.trace_id, "traceparent": f"00-{self.trace_id}-{secrets.token_hex(8)}-01"}


def plan(
    mix: Mapping[str, float],
    seed: int | None,
    prefix: str = ORDER_PREFIX,
    entries: Sequence[tuple[str, float]] = (),
) -> Iterator[Checkout]:
    """An endless, reproducible sequence of checkouts (the same seed gives the same sequence).

    ``prefix`` starts every order id: a Locust worker tags its own, so no two
    workers send one id. ``entries`` are the graph's entry routes and their
    weights; with more than one, each checkout draws its route too.
    """
    rng = random.Random(seed)
    names = list(mix)
    weights = [mix[name] for name in names]
    routes = [name for name, _ in entries]
    route_weights = [weight for _, weight in entries]
    index = 0
    while True:
        scenario = rng.choices(names, weights)[0]
        trace_id = format(rng.getrandbits(128), "032x")
        entry = rng.choices(routes, route_weights)[0] if len(routes) > 1 else ""
        yield Checkout(index, scenario, order_id(index, scenario, prefix), trace_id, entry)
        index += 1
