"""Refuse, before the first checkout, a ``fail_if`` / ``hang_if`` key that every order id of the run holds.

Such a key fires on every checkout whatever its scenario (``key_contains: ord``,
``-``, or ``ord-0`` in a run of under 100,000 checkouts), so the mix would
measure nothing. It is decided from the order id's shape
(:func:`fakesvc.traffic.plan.order_id`: fixed text around the checkout's
index digits), not by sampling ids: a substring automaton of the key reads
the fixed text and every digit the run's indexes can take, so the answer is
exact for any run length at a cost of a few hundred steps. A mix made only of
the key's own scenarios (``--mix timeout=1``) fails every checkout on
purpose, and passes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

from fakesvc.graph.load import load_graph
from fakesvc.graph.model import FailIf, HangIf, steps_of
from fakesvc.settings import ConfigError
from fakesvc.traffic.config import TrafficConfig
from fakesvc.traffic.plan import HEALTHY, INDEX_DIGITS, order_id, order_id_around

_DIGITS = "0123456789"


def check_order_ids(traffic: TrafficConfig) -> None:
    """:class:`ConfigError` for the first scenario key that every order id of this run contains."""
    graph = traffic.graph or load_graph("checkout")
    drawn = [name for name, weight in traffic.mix.items() if weight > 0]
    for service in graph.services:
        for route in service.routes:
            for step in steps_of(route.script):
                if not isinstance(step, (FailIf, HangIf)):
                    continue
                key = step.key_contains
                other = next((name for name in drawn if name == HEALTHY or key not in name), None)
                if other is not None and _in_every_id(key, drawn, traffic.total):
                    kind = "fail_if" if isinstance(step, FailIf) else "hang_if"
                    raise ConfigError(
                        f"{service.name} {route.name}: {kind} key_contains {key!r} is in every order id of this run "
                        f"({order_id(0, other)} too), so every checkout would hit it whatever its scenario "
                        "(use a key only its own scenario's order ids hold)"
                    )


def _in_every_id(key: str, scenarios: Iterable[str], count: int) -> bool:
    """Whether ``key`` is in the order id of every index below ``count`` and every scenario."""
    arounds = [order_id_around(scenario) for scenario in scenarios]
    for fixed, free in _index_blocks(count):
        for head, tail in arounds:
            states = _read(key, {0}, head + fixed)
            for _ in range(free):
                states = {_next(key, state, digit) for state in states for digit in _DIGITS}
            if any(state < len(key) for state in _read(key, states, tail)):
                return False
    return True


def _index_blocks(count: int) -> Iterator[tuple[str, int]]:
    """The index digits of ``0 .. count-1`` as blocks: fixed leading digits, then ``free`` digits taking every value."""
    index = 0
    while index < count:
        digits = f"{index:0{INDEX_DIGITS}d}"
        end = min(count, 10 ** len(digits))  # a block keeps one width: 999999 and 1000000 differ in length
        free = 0
        while index % 10 ** (free + 1) == 0 and index + 10 ** (free + 1) <= end:
            free += 1
        yield digits[: len(digits) - free], free
        index += 10**free


def _read(key: str, states: set[int], text: str) -> set[int]:
    for char in text:
        states = {_next(key, state, char) for state in states}
    return states


@functools.lru_cache(maxsize=4096)
def _next(key: str, state: int, char: str) -> int:
    """How much of ``key`` the text ends with after ``char``, ``state`` of it before; ``len(key)``: found (for good)."""
    if state == len(key):
        return state
    text = key[:state] + char
    return next(size for size in range(len(text), -1, -1) if key.startswith(text[len(text) - size :]))
