"""The deterministic scenarios of SPEC section 3, keyed by what the order id contains."""

from __future__ import annotations

from fakesvc.faults import Fault

DECLINED = "fail-pay"  # payment-service: the issuer declines, payment answers 500
HANG = "timeout"  # inventory-service: the query hangs longer than payment waits

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
