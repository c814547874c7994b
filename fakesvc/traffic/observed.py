"""The observed truth of one checkout: assembled from what each hop recorded, after the checkout ended.

Each hop keeps a record of what it did (:mod:`fakesvc.service.records`): the
faults it injected, its simulated work, its answer, and how each of its calls
ended. This module reads a checkout's records as a history, not a plan (a
Jepsen-style checker judges what happened): from the edge's answer down the
calls that failed it to the hop whose own injected fault explains the failure.

- ``healthy``: the checkout answered and no injected fault (noise aside)
  counts: none was injected, or a failed fallback absorbed it.
- ``fault``: an injected fault explains the outcome. A failure is followed
  down the first failing call that is not a fallback (the first failing
  branch of a ``parallel`` in file order) to a hop that answered an injected
  error or dropped the connection; a call that timed out is the fault's when
  the injected delay plus the simulated work in the callee's subtree reaches
  to within :data:`TIMEOUT_MARGIN_MS` of the timeout or past it, and its root
  cause is the service whose faults added the most delay in that subtree. A
  checkout that answered 200 with faults that count (slowed, not failed) is
  ``fault`` too, its root cause the service that slowed it most.
- ``harness``: the checkout failed and no injected fault explains it (a wait
  ran out with far less injected than the timeout, a connection the harness
  lost): the machine, the loop or the network broke it. The line says where
  and the figures: the hop whose wait ran out, its loop lag meanwhile, the
  injected and simulated time behind it.
- ``load``: no injected fault explains it, but hops waited for their service's
  capacity (the graph's ``capacity``): a failure the queue made late enough to
  time out, or a checkout that answered after hops queued
  :data:`LOAD_QUEUE_MS` or more. The root cause is the service that queued it
  most. Waiting for capacity under a ``cpu`` or ``memory`` fault is that fault's
  delay (the hop records it so), never load.
- ``incomplete``: a hop's record never arrived; ``missing_hops`` names them.

``root_cause_services`` keeps its meaning (every service whose own faults
alone would have made the checkout faulty), replayed from the faults observed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fakesvc.faults.rules import HARMLESS_KINDS
from fakesvc.graph.model import ENTRY_HOP, Parallel, Span, Step
from fakesvc.graph.model import Call as CallStep
from fakesvc.traffic.truth import (
    Mark,
    Tree,
    fault_delay,
    fault_ends,
    hop_order,
    records_by_hop,
    root_causes,
    slowest,
)

TIMEOUT_MARGIN_MS = 100.0  # a timeout is the fault's when the injected + simulated time reaches this close
LOAD_QUEUE_MS = 100.0  # a checkout that answered is ``load`` when its hops queued this long for capacity
CAUSES = ("healthy", "fault", "load", "harness", "incomplete")


@dataclass(frozen=True)
class EdgeView:
    """What the traffic generator saw of the checkout: the edge's answer, or how it got none."""

    status: int | None
    error: str | None  # the transport error instead of an answer
    timed_out: bool  # the generator's own wait ran out
    waited_ms: float
    timeout_ms: float


@dataclass
class Observed:
    """A checkout's observed truth: its cause, root causes, the faults injected, and the evidence."""

    cause: str
    root_cause_services: tuple[str, ...] = ()
    faults: list[dict[str, Any]] = field(default_factory=list)
    missing_hops: list[str] = field(default_factory=list)
    harness: dict[str, Any] | None = None
    load: dict[str, Any] | None = None  # the service that queued most, and how long

    @property
    def root_cause_service(self) -> str | None:
        return self.root_cause_services[0] if self.root_cause_services else None


@dataclass(frozen=True)
class _Time:
    """A subtree's time as the records explain it: injected delay and simulated work, on its slowest path."""

    injected_ms: float = 0.0
    simulated_ms: float = 0.0
    queued_ms: float = 0.0  # waited for capacity with no fault to blame

    @property
    def total_ms(self) -> float:
        return self.injected_ms + self.simulated_ms + self.queued_ms

    def __add__(self, other: _Time) -> _Time:
        return _Time(
            self.injected_ms + other.injected_ms,
            self.simulated_ms + other.simulated_ms,
            self.queued_ms + other.queued_ms,
        )

    def capped(self, cap_ms: float) -> _Time:
        """The part of this time a caller waited for, when it stopped waiting at ``cap_ms``: injected first."""
        if self.total_ms <= cap_ms:
            return self
        injected = min(self.injected_ms, cap_ms)
        queued = min(self.queued_ms, cap_ms - injected)
        return _Time(injected, cap_ms - injected - queued, queued)


class _Chain:
    """One checkout's records, read against its tree."""

    def __init__(self, tree: Tree, records: Sequence[dict[str, Any]]) -> None:
        self.tree = tree
        self.by_hop = {record["hop"]: record for record in records if record.get("hop") in tree.hops}

    def missing(self, view: EdgeView) -> list[str]:
        """The hops whose record should be here and is not (a call that reached its callee, the edge if reached)."""
        expected = []
        if view.status is not None or view.timed_out or _reached(view.error):
            expected.append(ENTRY_HOP)
        for record in self.by_hop.values():
            for call in record.get("calls", ()):
                outcome = call.get("outcome")
                if outcome in ("answered", "timeout") or (outcome == "connection" and call.get("reached")):
                    expected.append(call["hop"])
        return sorted({hop for hop in expected if hop not in self.by_hop and hop in self.tree.hops}, key=hop_order)

    def faults(self) -> list[dict[str, Any]]:
        """Every fault the hops injected, in hop order, as decided (a seed gives the same): not the time each took."""
        return [
            {key: value for key, value in fault.items() if key != "applied_ms"}
            for hop in sorted(self.by_hop, key=hop_order)
            for fault in self.by_hop[hop].get("faults", ())
        ]

    def explain_failure(self, hop: str) -> Observed:
        """Why hop ``hop`` failed (answered an error or dropped): follow its failing call down to a fault."""
        record = self.by_hop[hop]
        own = record.get("faults", ())
        if any(fault_ends(fault) for fault in own):
            return Observed("fault", (record["service"],))
        call = self._failing_call(hop, record)
        if call is None:
            return self._harness(hop, record, None, f"{record['service']} failed with no injected cause")
        outcome, callee = call.get("outcome"), call["hop"]
        if outcome == "answered":
            return self.explain_failure(callee)
        if outcome == "timeout":
            return self.explain_timeout(hop, callee, call["timeout_ms"], call)
        if outcome == "connection" and callee in self.by_hop and self.by_hop[callee].get("outcome") == "dropped":
            return self.explain_failure(callee)
        return self._harness(hop, record, call, f"{call['service']}: {call.get('error', outcome)}")

    def explain_timeout(self, hop: str | None, callee: str, timeout_ms: float, call: Mapping[str, Any]) -> Observed:
        """A wait that ran out: the fault's when the injected delay plus the simulated work behind it reach it."""
        spent = self.time(callee)
        if spent.injected_ms > 0 and spent.total_ms + TIMEOUT_MARGIN_MS >= timeout_ms:
            cause = slowest(self.marks(callee), self.tree, late=True)
            return Observed("fault", (cause,) if cause else ())
        if spent.queued_ms > 0 and spent.total_ms + TIMEOUT_MARGIN_MS >= timeout_ms:
            return self.load(callee)
        words = f"{self.tree.hops[callee]} did not answer within {timeout_ms:g} ms"
        return self._harness(hop, self.by_hop.get(hop) if hop else None, call, words, spent, callee)

    def _failing_call(self, hop: str, record: Mapping[str, Any]) -> dict[str, Any] | None:
        """The call that failed the hop: the first failing one that is not a fallback, in file order."""
        failing = [
            call
            for call in record.get("calls", ())
            if _failed(call) and call["hop"] in self.tree.calls and self.tree.calls[call["hop"]].on_error != "ignore"
        ]
        return min(failing, key=lambda call: hop_order(call["hop"]), default=None)

    def time(self, hop: str) -> _Time:
        """The injected delay and simulated work the records explain for ``hop``'s subtree (slowest path)."""
        record = self.by_hop.get(hop)
        if record is None:
            return _Time()
        own = record.get("faults", ())
        injected = sum(fault_delay(fault) for fault in own if fault.get("kind") not in HARMLESS_KINDS)
        if any(fault_ends(fault) for fault in own):
            return _Time(injected, 0.0)
        called = {call["hop"]: call for call in record.get("calls", ())}
        below = self._steps_time(hop, called, self.tree.routes[hop][1].script)
        return _Time(injected, float(record.get("work_ms") or 0.0), float(record.get("queued_ms") or 0.0)) + below

    def queued(self, hop: str) -> dict[str, float]:
        """The time each service of ``hop``'s subtree queued for capacity with no fault to blame."""
        record = self.by_hop.get(hop)
        if record is None:
            return {}
        found = {record["service"]: float(record.get("queued_ms") or 0.0)}
        for call in record.get("calls", ()):
            for service, ms in self.queued(call["hop"]).items():
                found[service] = found.get(service, 0.0) + ms
        return found

    def load(self, hop: str) -> Observed:
        """``load``: the service of ``hop``'s subtree that queued most is the root cause."""
        queued = {service: ms for service, ms in self.queued(hop).items() if ms > 0}
        service = max(queued, key=lambda name: (queued[name], self.tree.depth[name]))
        return Observed("load", (service,), load={"service": service, "queued_ms": round(queued[service], 3)})

    def _steps_time(self, hop: str, called: Mapping[str, Mapping[str, Any]], steps: Sequence[Step]) -> _Time:
        total = _Time()
        for step in steps:
            if isinstance(step, CallStep):
                child = f"{hop}.{step.index}"
                if child in called:
                    cap = float(called[child].get("timeout_ms") or step.timeout_s * 1000)  # the service's own
                    total = total + self.time(child).capped(cap)  # the caller stopped waiting at its cap
            elif isinstance(step, Span):
                total = total + self._steps_time(hop, called, step.steps)
            elif isinstance(step, Parallel):
                branches = [self._steps_time(hop, called, (branch,)) for branch in step.steps]
                total = total + max(branches, key=lambda spent: spent.total_ms, default=_Time())
        return total

    def marks(self, hop: str, absorbed: bool = False) -> list[Mark]:
        """The faulted hops of ``hop``'s subtree, those behind a failed fallback marked absorbed."""
        record = self.by_hop.get(hop)
        if record is None:
            return []
        counted = [fault for fault in record.get("faults", ()) if fault.get("kind") not in HARMLESS_KINDS]
        found = [Mark(hop, record["service"], sum(map(fault_delay, counted)), absorbed)] if counted else []
        for call in record.get("calls", ()):
            fallback = call["hop"] in self.tree.calls and self.tree.calls[call["hop"]].on_error == "ignore"
            found += self.marks(call["hop"], absorbed or (fallback and _failed(call)))
        return found

    def _harness(
        self,
        hop: str | None,
        record: Mapping[str, Any] | None,
        call: Mapping[str, Any] | None,
        what: str,
        spent: _Time | None = None,
        callee: str | None = None,
    ) -> Observed:
        evidence: dict[str, Any] = {"what": what, "hop": hop if hop is not None else "generator"}
        if record is not None:
            evidence.update(service=record["service"], process=record.get("process"))
        if call is not None:
            evidence.update(
                waited_ms=call.get("waited_ms"), timeout_ms=call.get("timeout_ms"), loop_lag_ms=call.get("lag_ms")
            )
        if spent is not None:
            evidence.update(injected_ms=round(spent.injected_ms, 3), simulated_ms=round(spent.simulated_ms, 3))
        if callee is not None and callee in self.by_hop:
            evidence["callee_loop_lag_ms"] = self.by_hop[callee].get("lag_ms")
        return Observed("harness", harness=evidence)


def _failed(call: Mapping[str, Any]) -> bool:
    if call.get("outcome") == "answered":
        status = call.get("status")
        return not isinstance(status, int) or status >= 400
    return call.get("outcome") != "cancelled"


def _reached(error: str | None) -> bool:
    """Whether a transport error may have come after the edge got the request (a refused connection did not)."""
    return error is not None and not error.startswith(("ClientConnectorError", "ClientConnectorDNSError"))


def observe(tree: Tree, records: Sequence[dict[str, Any]], view: EdgeView) -> Observed:
    """The observed truth of one checkout from its hops' records and what the generator saw (module doc)."""
    chain = _Chain(tree, records)
    faults = chain.faults()
    missing = chain.missing(view)
    if missing:
        return Observed("incomplete", faults=faults, missing_hops=missing)
    if view.status == 200:
        cause = slowest(chain.marks(ENTRY_HOP), tree, late=False)
        found = Observed("fault", (cause,)) if cause else Observed("healthy")
        if cause is None and sum(chain.queued(ENTRY_HOP).values()) >= LOAD_QUEUE_MS:
            found = chain.load(ENTRY_HOP)
    elif view.status is not None or (ENTRY_HOP in chain.by_hop and chain.by_hop[ENTRY_HOP]["outcome"] == "dropped"):
        found = chain.explain_failure(ENTRY_HOP)
    elif view.timed_out:
        wait = {"waited_ms": round(view.waited_ms, 3), "timeout_ms": view.timeout_ms, "lag_ms": None}
        found = chain.explain_timeout(None, ENTRY_HOP, view.timeout_ms, wait)
    else:
        found = Observed("harness", harness={"what": f"the edge: {view.error}", "hop": "generator"})
    found.faults = faults
    if found.cause == "fault" and found.root_cause_services:
        counted = records_by_hop(faults, tree)
        found.root_cause_services = root_causes(tree, counted, found.root_cause_services[0], view.timeout_ms)
    return found
