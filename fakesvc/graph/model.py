"""A service graph as data: services, their routes, and each route's script of steps.

A graph is read once from a file (:mod:`fakesvc.graph.load`), checked whole,
and then only read: the hop engine (:mod:`fakesvc.service.hop`) runs a route's script
for every request, the truth (:mod:`fakesvc.traffic.truth`) replays the same
script over the faults a checkout got, the traffic picks among the entry
routes. Every number here is already resolved (parameters substituted) and
checked finite and in bounds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

# How a call fails (fakesvc.service.hop.UpstreamFailure.reason: timeout, connection, status), and "any" of them.
FAILURE_KEYS: tuple[str, ...] = ("timeout", "connection", "status", "any")
LOG_LEVELS = ("debug", "info", "warning", "error")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Sleep:
    """``sleep: {ms: [20, 50]}`` or ``sleep: {ms: 5}``: baseline work, uniform in [low, high] ms, times the latency scale."""

    low_ms: float
    high_ms: float


@dataclass(frozen=True)
class Log:
    """``log: {level: info, message: Checkout initiated}``: a log line of this hop."""

    level: str
    message: str


@dataclass(frozen=True)
class Failure:
    """How a hop answers when one of its calls failed: status, error code (None: derived), message start (None: the route's ``failed``)."""

    status: int
    error_code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class Call:
    """``call: {service, path, method, timeout_s, on_error, errors}``: one request to another service.

    ``index`` numbers the calls of a route in document order (0, 1, ...): a
    request's place in the checkout is the chain of these numbers after the
    entry's ``0`` (its *hop*: ``"0.2"`` is the entry's third call), which
    the fault records and the truth carry.
    ``errors`` maps how the call failed (``timeout``, ``connection``,
    ``status``, or ``any``) to this hop's answer; unset, a timeout answers
    504 and the rest 502. ``on_error: ignore`` is a fallback: the hop logs a
    WARNING and goes on, degraded, not failed.
    """

    service: str
    path: str  # a template: "/stock/{order_id}" (the caller's key) is filled in per request
    method: str
    route: str  # the callee's route this path reaches ("/stock/{item_id}")
    timeout_s: float
    on_error: Literal["fail", "ignore"] = "fail"
    errors: Mapping[str, Failure] = field(default_factory=dict)
    index: int = 0

    def failure(self, reason: str) -> Failure:
        """This hop's answer when the call failed for ``reason`` (``timeout``, ``connection`` or ``status``)."""
        found = self.errors.get(reason) or self.errors.get("any")
        if found is not None:
            return found
        return Failure(504 if reason == "timeout" else 502)


@dataclass(frozen=True)
class Parallel:
    """``parallel: [step, ...]``: the steps run at once; the hop goes on when all have ended.

    When several fail, the first in document order decides the hop's answer
    (deterministic, so the truth can replay it).
    """

    steps: tuple[Step, ...]


@dataclass(frozen=True)
class FailIf:
    """``fail_if: {key_contains, status, exception, message, error_code}``: a scenario error.

    When the request's key contains ``key_contains`` the hop raises a real
    ``exception`` (a builtin type by name) with ``message`` and answers
    ``status``; the scenario's name is ``key_contains``.
    """

    key_contains: str
    status: int
    exception: str
    message: str
    error_code: str | None = None


@dataclass(frozen=True)
class HangIf:
    """``hang_if: {key_contains, s, detail}``: a scenario hang of ``s`` seconds (not scaled)."""

    key_contains: str
    seconds: float
    detail: str = "hangs"


@dataclass(frozen=True)
class Span:
    """``span: {name, attributes, script}``: a child span around some steps (a query, a charge)."""

    name: str
    attributes: Mapping[str, Any]  # string values are templates like the response's
    steps: tuple[Step, ...]


Step: TypeAlias = Sleep | Log | Call | Parallel | FailIf | HangIf | Span


@dataclass(frozen=True)
class FromCall:
    """``{from_call: SERVICE, field: NAME}`` in a response: a field of that call's answer (null if absent)."""

    service: str
    field: str


@dataclass(frozen=True)
class KeyFlag:
    """``{key_flag: {false_one_in: 10}}`` in a response: a stable boolean per key, false for one key in N."""

    false_one_in: int


ResponseValue: TypeAlias = Any  # str (a template), number, bool, None, FromCall, KeyFlag


@dataclass(frozen=True)
class Route:
    """One business route of a service: what it is called, how it logs, what it does and answers."""

    path: str  # "/checkout/{order_id}": exactly one placeholder, the key
    method: str
    script: tuple[Step, ...]
    entry: bool = False
    weight: float = 1.0  # among the entry routes, for the traffic mix
    completed: str = "Request completed"
    failed: str = "Request failed"
    slow_code: str = "SLOW_RESPONSE"
    response: Mapping[str, ResponseValue] | None = None  # None: {key: ..., "status": "OK"}

    @functools.cached_property
    def key(self) -> str:
        """The name of the path's one placeholder (``order_id``); read on every request, so worked out once."""
        return _PLACEHOLDER.findall(self.path)[0]

    @functools.cached_property
    def name(self) -> str:
        """``POST /checkout/{order_id}``: how the route is named in messages and the traffic mix."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Service:
    """A service: its name (as in every signal), its port (None: base port + index), its routes."""

    name: str
    routes: tuple[Route, ...]
    port: int | None = None
    code_prefix: str = ""  # "PAYMENT": error codes and the PAYMENT_PORT / PAYMENT_URL settings
    capacity: int | None = None  # requests it works on at once, beyond them they queue; None: unlimited

    def route(self, path: str) -> Route:
        return next(route for route in self.routes if route.path == path)


@dataclass(frozen=True)
class Graph:
    """A whole topology. Its services are in file order; entry routes all belong to one edge service."""

    name: str
    services: tuple[Service, ...]
    parameters: Mapping[str, float] = field(default_factory=dict)  # as resolved (file defaults, then settings)
    source: str = ""  # the file it came from, for messages

    def service(self, name: str) -> Service:
        return next(service for service in self.services if service.name == name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(service.name for service in self.services)

    def entry_routes(self) -> list[tuple[Service, Route]]:
        return [(service, route) for service in self.services for route in service.routes if route.entry]

    @functools.cached_property
    def entries(self) -> dict[str, Route]:
        """The entry routes by name (``POST /checkout/{order_id}``): what every planned checkout is sent to."""
        return {route.name: route for _, route in self.entry_routes()}

    @property
    def edge(self) -> Service:
        """The service the traffic generator sends to (the one holding the entry routes)."""
        return self.entry_routes()[0][0]

    def callees(self, service: str) -> list[str]:
        """The services ``service`` calls, in order of first appearance, each once."""
        seen: dict[str, None] = {}
        for route in self.service(service).routes:
            for call in calls_of(route.script):
                seen.setdefault(call.service, None)
        return list(seen)

    def scenarios(self) -> list[str]:
        """The scenario names (``fail_if`` / ``hang_if`` ``key_contains``), each once, in file order."""
        found: dict[str, None] = {}
        for service in self.services:
            for route in service.routes:
                for step in steps_of(route.script):
                    if isinstance(step, (FailIf, HangIf)):
                        found.setdefault(step.key_contains, None)
        return list(found)

    def edges(self) -> list[tuple[str, str, str]]:
        """Every (caller, callee, call path) in the graph, once each, in file order."""
        out: dict[tuple[str, str, str], None] = {}
        for service in self.services:
            for route in service.routes:
                for call in calls_of(route.script):
                    out.setdefault((service.name, call.service, f"{call.method} {call.path}"), None)
        return list(out)


def steps_of(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step of a script in document order, those nested in ``parallel`` and ``span`` included."""
    for step in steps:
        yield step
        if isinstance(step, (Parallel, Span)):
            yield from steps_of(step.steps)


def calls_of(steps: tuple[Step, ...]) -> Iterator[Call]:
    """The calls of a script in document order, nested ones included."""
    return (step for step in steps_of(steps) if isinstance(step, Call))


ENTRY_HOP = "0"


def child_hop(hop: str, call: Call) -> str:
    """The hop id of the request ``call`` makes from hop ``hop``: ``"0.2"`` is the entry's third call."""
    return f"{hop}.{call.index}"


def fill(template: str, values: Mapping[str, str]) -> str:
    """``/stock/{order_id}`` with the values; unknown placeholders stay as written (the loader refuses them)."""
    if "{" not in template:  # most messages and response fields: nothing to fill, on every request
        return template
    return _PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), template)


def placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)
