"""What the graph's call timeouts cannot honour at the settings in force, found before anything listens.

A call whose timeout is below its callee's least simulated work (the sleeps'
lows times the latency scale, plus the callee's own calls) times out on every
request, so the run is refused with one line. A latency or hang fault rule
whose delay comes within :data:`NEAR_MS` of a caller's timeout is kept, with
one line on stderr: whether such a checkout times out is down to the
scheduler, and the truth labels each as it was observed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence

from fakesvc.config import ServiceConfig
from fakesvc.console import say
from fakesvc.faults.rules import Rule
from fakesvc.graph.model import Call, Graph, Parallel, Route, Sleep, Span, Step, calls_of
from fakesvc.settings import ConfigError

NEAR_MS = 50.0  # a fault delay this close to a timeout may land on either side of it

_Memo = dict[tuple[str, str, str], float]  # (service, method, route path) -> its least work in ms


def check_run(
    graph: Graph, config: ServiceConfig, rules: Mapping[str, Sequence[Rule]], services: Collection[str]
) -> None:
    """At the start of serving ``services``: refuse a call of theirs that cannot succeed, note faults near a timeout."""
    check_timeouts(graph, config.latency_scale, services)
    for service in services:
        for rule in rules.get(service, ()):
            line = near_timeout(graph, service, rule, config.hang_s)
            if line:
                say(line)


def check_timeouts(graph: Graph, latency_scale: float, services: Collection[str]) -> None:
    """:class:`ConfigError` naming the first call of ``services`` whose timeout is below its callee's least work."""
    memo: _Memo = {}
    late = [
        (caller, route, call, work)
        for caller, route, call in _calls(graph, services)
        if (work := _call_work(graph, call, latency_scale, memo)) > call.timeout_s * 1000
    ]
    if not late:
        return
    (caller, route, call, work), *others = late
    likewise = "".join(f"; likewise {other} -> {callee.service}" for other, _, callee, _ in others)
    raise ConfigError(
        f"{graph.source}: {caller} {route.name}: its call to {call.service} times out after {call.timeout_s:g} s, but "
        f"{call.service} {call.method} {call.route} takes at least {work:,g} ms at latency scale {latency_scale:g}: "
        f"the call can never succeed (raise its timeout_s or lower --latency-scale){likewise}"
    )


def near_timeout(graph: Graph, service: str, rule: Rule, hang_s: float) -> str:
    """The stderr line for a latency or hang ``rule`` of ``service`` within :data:`NEAR_MS` of a caller's timeout, or ""."""
    if rule.kind == "latency":
        low, high = rule.latency_ms
    elif rule.kind == "hang":
        low = high = (hang_s if rule.hang_s is None else rule.hang_s) * 1000
    else:
        return ""
    near = {
        f"{caller}'s {call.timeout_s:g} s timeout": None
        for caller, _, call in _calls(graph, graph.names)
        if call.service == service
        and rule.route in (None, call.route)
        and rule.method in (None, call.method)
        and call.timeout_s * 1000 - high <= NEAR_MS
        and low < call.timeout_s * 1000 + NEAR_MS
    }
    if not near:
        return ""
    return (
        f"{service}: the {rule.describe()} rule comes within {NEAR_MS:g} ms of {' and '.join(near)} on it: "
        "such checkouts may time out or not, and the truth labels each as observed"
    )


def _calls(graph: Graph, services: Collection[str]) -> Iterator[tuple[str, Route, Call]]:
    """Every call the routes of ``services`` make, with its caller and route, in file order."""
    for service in graph.services:
        if service.name in services:
            for route in service.routes:
                for call in calls_of(route.script):
                    yield service.name, route, call


def _call_work(graph: Graph, call: Call, scale: float, memo: _Memo) -> float:
    """The least time the callee's route takes, in ms: its script's, worked out once per route."""
    key = (call.service, call.method, call.route)
    if key not in memo:
        routes = graph.service(call.service).routes
        route = next(route for route in routes if (route.method, route.path) == (call.method, call.route))
        memo[key] = sum(_least_ms(graph, step, scale, memo) for step in route.script)
    return memo[key]


def _least_ms(graph: Graph, step: Step, scale: float, memo: _Memo) -> float:
    """A step's least time: a sleep's low scaled, a span's steps added, a parallel's slowest branch, a call at most its timeout.

    Logs take no simulated time; ``fail_if`` and ``hang_if`` are faults, not work.
    """
    if isinstance(step, Sleep):
        return step.low_ms * scale
    if isinstance(step, Span):
        return sum(_least_ms(graph, inner, scale, memo) for inner in step.steps)
    if isinstance(step, Parallel):
        return max(_least_ms(graph, branch, scale, memo) for branch in step.steps)
    if isinstance(step, Call):
        return min(step.timeout_s * 1000, _call_work(graph, step, scale, memo))
    return 0.0
