"""What the traffic will be: a deterministic sequence of checkouts from a seed and a mix."""

from __future__ import annotations

import math
import random
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

SCENARIOS = ("success", "fail-pay", "timeout")
DEFAULT_MIX = {"success": 90, "fail-pay": 5, "timeout": 5}


def parse_mix(raw: str) -> dict[str, float]:
    """``success=90,fail-pay=5,timeout=5`` -> weights; unknown scenarios and bad weights are errors."""
    mix: dict[str, float] = {}
    for part in raw.split(","):
        name, sep, weight = part.strip().partition("=")
        if not sep or name not in SCENARIOS:
            raise ValueError(f"must be SCENARIO=WEIGHT,... with scenarios {', '.join(SCENARIOS)}")
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


@dataclass(frozen=True)
class Checkout:
    """One planned checkout: its position, scenario, order id and trace id."""

    index: int
    scenario: str
    order_id: str
    trace_id: str

    def headers(self) -> dict[str, str]:
        """What the checkout request carries: its trace id as ``x-request-id`` and as a W3C ``traceparent``.

        The ``traceparent`` makes the services' OpenTelemetry spans (the OTLP
        exporter's) share the truth's ``trace_id``; the parent span id is the
        generator's own request, which nothing records, so any random one does.
        """
        return {"x-request-id": self.trace_id, "traceparent": f"00-{self.trace_id}-{secrets.token_hex(8)}-01"}


def plan(mix: Mapping[str, float], seed: int | None, prefix: str = "ord") -> Iterator[Checkout]:
    """An endless, reproducible sequence of checkouts (the same seed gives the same sequence).

    ``prefix`` starts every order id: a Locust worker tags its own, so no two workers send one id.
    """
    rng = random.Random(seed)
    names = list(mix)
    weights = [mix[name] for name in names]
    index = 0
    while True:
        scenario = rng.choices(names, weights)[0]
        trace_id = format(rng.getrandbits(128), "032x")
        yield Checkout(index, scenario, f"{prefix}-{index:06d}-{scenario}", trace_id)
        index += 1
