"""Ground truth: what was injected into a checkout, where the root cause is, what it should answer.

Rules, documented once here:
- root cause: none when nothing was injected; otherwise the service of the
  decisive fault: ``error``/``hang``/``drop`` beat ``latency``; among equals the
  most downstream service wins (inventory, then payment, then the gateway); among
  latency-only faults, the largest added latency.
- expected status: ``fail-pay`` and ``timeout`` answer 500; an error, hang or
  drop in payment or inventory makes the gateway answer 500; an error in the
  gateway answers its rule's status; added latency makes a 500 only when it
  outlasts the caller's timeout (inventory's against payment's
  ``FAKESVC_INVENTORY_TIMEOUT_S``, payment's against the gateway's
  ``FAKESVC_PAYMENT_TIMEOUT_S``); otherwise 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timeouts:
    """How long each caller waits for its downstream, in seconds (the services' settings)."""

    inventory_s: float = 2.0  # payment waiting for inventory
    payment_s: float = 5.0  # the gateway waiting for payment

    def outlasted_by(self, fault: dict[str, Any]) -> bool:
        limit = {"inventory-service": self.inventory_s, "payment-service": self.payment_s}.get(fault.get("service", ""))
        return limit is not None and _latency_ms(fault) >= limit * 1000


DEFAULT_TIMEOUTS = Timeouts()

DOWNSTREAM_ORDER = {"inventory-service": 2, "payment-service": 1, "api-gateway": 0}
SCENARIO_FAULTS = {
    "fail-pay": {
        "service": "payment-service",
        "kind": "error",
        "detail": "scenario fail-pay: Payment declined by issuer",
    },
    "timeout": {
        "service": "inventory-service",
        "kind": "hang",
        "detail": "scenario timeout: the inventory query hangs",
    },
}
_LATENCY_MS = re.compile(r"(\d+(?:\.\d+)?) ms")
_STATUS = re.compile(r"^error (\d{3}) ")


def _latency_ms(fault: dict[str, Any]) -> float:
    match = _LATENCY_MS.search(str(fault.get("detail", "")))
    return float(match.group(1)) if match else 0.0


def root_cause_service(faults: list[dict[str, Any]]) -> str | None:
    if not faults:
        return None
    severe = [f for f in faults if f.get("kind") != "latency"]
    if severe:
        return max(severe, key=lambda f: DOWNSTREAM_ORDER.get(f.get("service", ""), -1))["service"]
    return max(faults, key=_latency_ms)["service"]


def expected_status(scenario: str, faults: list[dict[str, Any]], timeouts: Timeouts | None = None) -> int:
    if scenario in SCENARIO_FAULTS:
        return 500
    for fault in faults:
        if fault.get("service") == "api-gateway" and fault.get("kind") == "error":
            match = _STATUS.match(str(fault.get("detail", "")))
            return int(match.group(1)) if match else 500
    timeouts = timeouts or DEFAULT_TIMEOUTS
    if any(f.get("kind") != "latency" or timeouts.outlasted_by(f) for f in faults):
        return 500
    return 200


def faults_for(scenario: str, reported: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The faults the services reported, or, with no report, what the scenario implies."""
    if reported is not None:
        return reported
    return [SCENARIO_FAULTS[scenario]] if scenario in SCENARIO_FAULTS else []
