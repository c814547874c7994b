"""Ground truth: what was injected into a checkout, where the root cause is, what it should answer.

The verdict replays the checkout over the service graph (by default the
built-in ``checkout``: api-gateway -> payment-service -> inventory-service),
from the structured fault records the services reported, never from their
prose ``detail``. The graph is a DAG, unfolded per entry route into a tree of
*hops* (``0`` is the entry request, ``0.1`` the one its second call makes:
:func:`fakesvc.graph.model.child_hop`); each record says the hop it was
injected at (a record of an older file, without ``hop``, belongs to every hop
of its service).

- a hop first applies its records in order: ``latency`` and ``hang`` add
  their ``delay_ms``, an ``error`` answers its ``status`` (500 unless
  400-599), a ``drop`` gives no answer; a record after an error or a drop
  never happened. Then its route's script: sleeps and logs are not replayed,
  a span's steps run inline, ``fail_if`` / ``hang_if`` add nothing (their
  faults are in the records), sequential steps add up their time. Nothing
  failed: 200.
- a call waits for its callee hop at most ``timeout_s``. It fails with reason
  ``timeout`` when the callee took that long (after exactly the timeout),
  ``connection`` when the callee gave no answer, ``status`` when it answered
  400 or more; the caller then answers ``call.failure(reason)`` (the call's
  ``errors``: a timeout 504, the rest 502 unless mapped). So a hang shorter
  than its caller's timeout is as harmless as a latency of the same length.
- a fallback (``on_error: ignore``) that failed leaves its caller going on,
  degraded, and *absorbs* the callee's whole subtree: none of its faults is a
  root cause or counts as slowing the checkout, unless the wait for it (at
  most its timeout) made a caller above, or the generator, give up.
- a ``parallel`` block takes as long as its slowest branch; when branches
  fail, the first in document order decides the hop's answer.
- expected status: what the edge answers the traffic generator; ``None`` (no
  answer) when the edge drops the connection or takes at least the
  generator's own timeout.
- root cause: ``None`` when no fault counts (none but noise, or all absorbed);
  for a failure, the service whose error or drop failed it, following the
  failing calls down; for a timeout, the slowest service in the subtree of
  the call that gave up; otherwise (200, or no answer in time) the slowest
  service of the checkout. The slowest is the one whose faults added the most
  delay; ties go to the most downstream service, then to the later hop.
- root causes (``root_cause_services``): every service whose own faults,
  replayed alone (the other services' faults left out), would have made the
  checkout faulty, i.e. named a root cause: a checkout whose payment was
  slowed and whose inventory then failed has both. ``root_cause_service`` is
  the first of them; the others follow, the most downstream first (the
  longest call path from the edge), then in graph file order. ``[]`` when no
  fault counts.
- ``noise`` faults (a harmless ERROR log, see :mod:`fakesvc.faults.noise`) are
  left out of the replay: never a root cause, never a change of status, so a
  checkout with only noise is healthy.

The baseline simulated latency is not replayed: score at latency scale 0, or
with timeouts far from the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from fakesvc.faults.rules import HARMLESS_KINDS
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import ENTRY_HOP, Call, Graph, Parallel, Route, Service, Span, Step, calls_of, child_hop

FAILED = 500  # what an error record answers when its status is not one

Records = Mapping[str, Sequence[dict[str, Any]]]  # hop -> the fault records injected there


@dataclass(frozen=True)
class Timeouts:
    """How long each caller waits for the service it calls, in seconds (the services' settings)."""

    inventory_s: float = 2.0  # payment waiting for inventory
    payment_s: float = 5.0  # the gateway waiting for payment
    checkout_s: float = 30.0  # the traffic generator waiting for the gateway


DEFAULT_TIMEOUTS = Timeouts()


class Verdict(NamedTuple):
    """What a checkout with these faults should answer, and which service is to blame."""

    expected_status: int | None
    root_cause_service: str | None
    root_cause_services: tuple[str, ...]  # root_cause_service first, then the others, most downstream first


@dataclass(frozen=True)
class Mark:
    """A reached hop with faults: the delay they added there, and whether a failed fallback absorbed them."""

    hop: str
    service: str
    delay_ms: float
    absorbed: bool = False


@dataclass(frozen=True)
class _Answer:
    """How a hop (or some of its steps) ended: status (None: no answer), time taken, culprit, the faulted hops below."""

    status: int | None
    elapsed_ms: float
    cause: str | None
    marks: tuple[Mark, ...]


@dataclass(frozen=True)
class Tree:
    """A graph unfolded from one entry route: each hop's service in document order, each service's depth."""

    graph: Graph
    entry: tuple[Service, Route]
    hops: dict[str, str]  # hop -> service, in document order
    depth: dict[str, int]  # service -> the longest call path from the edge to it
    routes: dict[str, tuple[Service, Route]]  # hop -> the service and route it runs
    calls: dict[str, Call]  # hop (but the entry) -> the call that makes it


def fault_ends(fault: dict[str, Any]) -> bool:
    """Whether the request ended at this fault: an answered error, a dropped connection, a loss that cut it, a kill."""
    return fault.get("kind") in ("error", "drop") or fault.get("dropped") is True


def fault_delay(fault: dict[str, Any]) -> float:
    """A record's added delay in ms; anything but a finite non-negative number counts as none."""
    value = fault.get("delay_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        return 0.0
    return float(value)


def _error_status(fault: dict[str, Any]) -> int:
    status = fault.get("status")
    return status if isinstance(status, int) and 400 <= status <= 599 else FAILED


def hop_order(hop: str) -> tuple[int, ...]:
    """A hop's place in document order (the tree's pre-order)."""
    return tuple(int(part) for part in hop.split("."))


def slowest(marks: Sequence[Mark], tree: Tree, late: bool) -> str | None:
    """The service whose faults added the most delay (ties: the most downstream, then the later hop).

    Absorbed faults only count when someone gave up (``late``): waiting for a failed fallback made it late.
    """
    added: dict[str, float] = {}
    last: dict[str, tuple[int, ...]] = {}
    for mark in marks:
        if mark.absorbed and not late:
            continue
        added[mark.service] = added.get(mark.service, 0.0) + mark.delay_ms
        last[mark.service] = max(last.get(mark.service, ()), hop_order(mark.hop))
    if not added:
        return None
    return max(added, key=lambda service: (added[service], tree.depth[service], last[service]))


def callee_of(graph: Graph, call: Call) -> tuple[Service, Route]:
    service = graph.service(call.service)
    return service, service.route(call.route)


def _hop(tree: Tree, records: Records, hop: str, service: Service, route: Route) -> _Answer:
    """Replay one request: its faults in order, then its route's script."""
    delay = 0.0
    mine = records.get(hop, ())
    for fault in mine:
        if fault_ends(fault):
            status = _error_status(fault) if fault.get("kind") == "error" else None
            return _Answer(status, delay, service.name, (Mark(hop, service.name, delay),))
        delay += fault_delay(fault)
    marks = (Mark(hop, service.name, delay),) if mine else ()
    ran = _steps(tree, records, hop, route.script)
    return _Answer(ran.status, delay + ran.elapsed_ms, ran.cause, marks + ran.marks)


def _steps(tree: Tree, records: Records, hop: str, steps: Sequence[Step]) -> _Answer:
    """Steps one after the other: their times add up, the first failure ends them."""
    elapsed = 0.0
    marks: tuple[Mark, ...] = ()
    for step in steps:
        ran = _step(tree, records, hop, step)
        elapsed += ran.elapsed_ms
        marks += ran.marks
        if ran.status != 200:
            return _Answer(ran.status, elapsed, ran.cause, marks)
    return _Answer(200, elapsed, None, marks)


def _step(tree: Tree, records: Records, hop: str, step: Step) -> _Answer:
    """One step of a script; sleeps, logs and scenario faults take no time here (see the module doc)."""
    if isinstance(step, Call):
        return _call(tree, records, hop, step)
    if isinstance(step, Span):
        return _steps(tree, records, hop, step.steps)
    if isinstance(step, Parallel):
        return _parallel(tree, records, hop, step)
    return _Answer(200, 0.0, None, ())


def _parallel(tree: Tree, records: Records, hop: str, block: Parallel) -> _Answer:
    """Every branch runs; the block lasts as long as the slowest, the first failure in document order decides."""
    branches = [_step(tree, records, hop, step) for step in block.steps]
    failed = next((branch for branch in branches if branch.status != 200), None)
    elapsed = max((branch.elapsed_ms for branch in branches), default=0.0)
    marks = tuple(mark for branch in branches for mark in branch.marks)
    if failed is None:
        return _Answer(200, elapsed, None, marks)
    return _Answer(failed.status, elapsed, failed.cause, marks)


def _call(tree: Tree, records: Records, hop: str, call: Call) -> _Answer:
    """A call to the callee hop, waiting at most its timeout; a failed fallback absorbs the callee's faults."""
    callee = _hop(tree, records, child_hop(hop, call), *callee_of(tree.graph, call))
    wait_ms = call.timeout_s * 1000
    elapsed = min(callee.elapsed_ms, wait_ms)
    if callee.elapsed_ms >= wait_ms:
        reason, cause = "timeout", slowest(callee.marks, tree, late=True)
    elif callee.status is None or callee.status >= 400:
        reason, cause = ("connection" if callee.status is None else "status"), callee.cause
    else:
        return _Answer(200, elapsed, None, callee.marks)
    if call.on_error == "ignore":
        return _Answer(200, elapsed, None, tuple(replace(mark, absorbed=True) for mark in callee.marks))
    return _Answer(call.failure(reason).status, elapsed, cause, callee.marks)


def _unfold(
    graph: Graph, hop: str, service: Service, route: Route, depth: int, call: Call | None = None
) -> list[tuple[str, Service, Route, int, Call | None]]:
    """(hop, service, route, depth, the call that makes it) of the hop and every hop below it, in document order."""
    found = [(hop, service, route, depth, call)]
    for step in calls_of(route.script):
        found += _unfold(graph, child_hop(hop, step), *callee_of(graph, step), depth + 1, step)
    return found


_TREES: dict[tuple[int, str], Tree] = {}  # (id of the graph, entry route name): the tree holds the graph alive


def tree_of(graph: Graph, entry: Route | str | None) -> Tree:
    """The graph unfolded from ``entry`` (None: the first entry route), computed once per graph and entry."""
    routes = graph.entry_routes()
    name = routes[0][1].name if entry is None else entry if isinstance(entry, str) else entry.name
    key = (id(graph), name)
    if key not in _TREES:
        found = next(((s, r) for s, r in routes if r.name == name), None)
        if found is None:
            raise ValueError(f"graph {graph.name} has no entry route {name!r} (it has {', '.join(graph.entries)})")
        service, route = found
        tree = Tree(graph, (service, route), {}, {}, {}, {})
        for hop, callee, callee_route, level, call in _unfold(graph, ENTRY_HOP, service, route, 0):
            tree.hops[hop] = callee.name
            tree.depth[callee.name] = max(tree.depth.get(callee.name, 0), level)
            tree.routes[hop] = (callee, callee_route)
            if call is not None:
                tree.calls[hop] = call
        if len(_TREES) >= 64:
            _TREES.clear()
        _TREES[key] = tree
    return _TREES[key]


def records_by_hop(faults: Sequence[dict[str, Any]], tree: Tree) -> dict[str, list[dict[str, Any]]]:
    """The faults that count, by the hop they were injected at (no ``hop``: every hop of their service)."""
    by_hop: dict[str, list[dict[str, Any]]] = {}
    for fault in faults:
        if fault.get("kind") in HARMLESS_KINDS:
            continue
        service, hop = fault.get("service"), fault.get("hop")
        for at in [hop] if isinstance(hop, str) else [at for at, owner in tree.hops.items() if owner == service]:
            if tree.hops.get(at) == service:  # else it was injected at no hop of this graph
                by_hop.setdefault(at, []).append(fault)
    return by_hop


def _replay(tree: Tree, records: Records, checkout_ms: float) -> tuple[int | None, str | None]:
    """The edge's answer to the generator and the service to blame."""
    answer = _hop(tree, records, ENTRY_HOP, *tree.entry)
    if answer.elapsed_ms >= checkout_ms:
        return None, slowest(answer.marks, tree, late=True)
    if answer.status == 200:
        return 200, slowest(answer.marks, tree, late=False)
    return answer.status, answer.cause


def checkout_graph(timeouts: Timeouts) -> Graph:
    """The built-in checkout graph with the call timeouts of ``timeouts``."""
    return load_graph(
        "checkout", {"inventory_timeout_s": timeouts.inventory_s, "payment_timeout_s": timeouts.payment_s}
    )


def judge(
    faults: Sequence[dict[str, Any]],
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    graph: Graph | None = None,
    entry: Route | str | None = None,
) -> Verdict:
    """The expected status and the root causes of a checkout that got ``faults`` (see the module doc).

    Without ``graph``, the checkout graph with the call timeouts of ``timeouts``;
    a given graph has its own, and only ``timeouts.checkout_s`` is used.
    """
    tree = tree_of(graph or checkout_graph(timeouts), entry)
    checkout_ms = timeouts.checkout_s * 1000
    records = records_by_hop(faults, tree)
    status, cause = _replay(tree, records, checkout_ms)
    return Verdict(status, cause, root_causes(tree, records, cause, checkout_ms))


def root_causes(tree: Tree, records: Records, cause: str | None, checkout_ms: float) -> tuple[str, ...]:
    """``cause`` first, then every other service whose own faults alone name a root cause, most downstream first."""
    if cause is None:
        return ()
    faulted = {tree.hops[hop] for hop in records} - {cause}
    faulty = [
        service
        for service in tree.graph.names
        if service in faulted and faulty_alone(tree, records, service, checkout_ms)
    ]
    faulty.sort(key=lambda service: -tree.depth[service])  # stable: file order among equals
    return (cause, *faulty)


def faulty_alone(tree: Tree, records: Records, service: str, checkout_ms: float) -> bool:
    """Whether ``service``'s own faults, the others' left out, name a root cause."""
    own = {hop: found for hop, found in records.items() if tree.hops[hop] == service}
    return _replay(tree, own, checkout_ms)[1] is not None
