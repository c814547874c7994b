"""Scenario faults: deterministic by order id (SPEC section 3), declared in the graph as ``fail_if`` / ``hang_if``.

A scenario is named by what the order id contains (``fail-pay``, ``timeout``);
the traffic mix picks among a graph's scenarios (:func:`fakesvc.graph.model.Graph.scenarios`).
"""

from __future__ import annotations

from fakesvc.faults import Fault

SCENARIO_RULE = -1  # scenario faults come from the order id, not from a chaos rule


def scenario_fault(
    service: str, scenario: str, kind: str, detail: str, *, status: int | None = None, delay_s: float = 0.0
) -> Fault:
    """A fault the scenario injected, labelled for the ground truth like a rule's (with its status or delay)."""
    return Fault(
        service=service,
        kind=kind,
        rule=SCENARIO_RULE,
        status=status,
        message=f"scenario {scenario}: {detail}",
        exception="",
        delay_s=delay_s,
    )
