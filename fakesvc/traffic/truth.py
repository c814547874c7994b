"""Ground truth: what was injected into a checkout, where the root cause is, what it should answer.

The verdict replays the chain (gateway -> payment -> inventory) from the
structured fault records the services reported, never from their prose
``detail``. Each service applies its faults in order: ``latency`` and ``hang``
add their ``delay_ms``, an ``error`` answers its ``status``, a ``drop`` cuts
the connection; then it calls the next service and waits at most its timeout.

- expected status: what the gateway answers the traffic generator. 200 when
  nothing failed; an error at the gateway answers its own status; a failure
  below it (an error, a drop, or a service slower than its caller's timeout)
  makes it 500; ``None`` (no answer) when the gateway drops the connection or
  takes longer than the generator's own timeout. So a hang shorter than its
  caller's timeout is as harmless as a latency of the same length.
- root cause: ``None`` when nothing was injected; for a failure, the service
  whose error or drop failed it, or, for a timeout, the slowest service behind
  the caller that gave up; otherwise the service with the largest added delay.
  Ties go to the most downstream service.
- root causes (``root_cause_services``): every service whose own faults,
  replayed alone (the other services' faults left out), would have made the
  checkout faulty, i.e. named a root cause. Alone, a service's faults always
  do (an error or a drop fails the checkout, a delay slows it), so these are
  the services with a fault in the record: a checkout whose payment was slowed
  and whose inventory then failed has both. ``root_cause_service`` is the first
  of them (the one the replay of all the faults blames, as above); the others
  follow, the most downstream first. ``[]`` when nothing was injected.
- ``noise`` faults (a harmless ERROR log, see :mod:`fakesvc.faults.noise`) are
  left out of the replay: never a root cause, never a change of status, so a
  checkout with only noise is healthy.

The baseline simulated latency is not replayed: score at latency scale 0, or
with timeouts far from the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from fakesvc.faults.rules import HARMLESS_KINDS

CHAIN = ("api-gateway", "payment-service", "inventory-service")  # each calls the next
FAILED = 500  # what a caller answers when the service behind it failed


@dataclass(frozen=True)
class Timeouts:
    """How long each caller waits for the service it calls, in seconds (the services' settings)."""

    inventory_s: float = 2.0  # payment waiting for inventory
    payment_s: float = 5.0  # the gateway waiting for payment
    checkout_s: float = 30.0  # the traffic generator waiting for the gateway

    def caller_wait_ms(self, service: str) -> float:
        """How long the caller of ``service`` waits for it."""
        seconds = {"inventory-service": self.inventory_s, "payment-service": self.payment_s}
        return seconds.get(service, self.checkout_s) * 1000


DEFAULT_TIMEOUTS = Timeouts()


class Verdict(NamedTuple):
    """What a checkout with these faults should answer, and which service is to blame."""

    expected_status: int | None
    root_cause_service: str | None
    root_cause_services: tuple[str, ...]  # root_cause_service first, then the others, most downstream first


@dataclass(frozen=True)
class _Answer:
    """How one service answered its caller: status (None: no answer), time taken, and the culprit."""

    status: int | None
    elapsed_ms: float
    cause: str | None


def _delay(fault: dict[str, Any]) -> float:
    """A record's added delay in ms; anything but a finite non-negative number counts as none."""
    value = fault.get("delay_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        return 0.0
    return float(value)


def _delay_ms(faults: Sequence[dict[str, Any]]) -> float:
    return sum(_delay(fault) for fault in faults)


def _slowest(services: Sequence[str], by_service: dict[str, list[dict[str, Any]]]) -> str | None:
    """The service among ``services`` that added the most delay (ties: the most downstream)."""
    faulted = [s for s in services if by_service[s]]
    if not faulted:
        return None
    return max(faulted, key=lambda s: (_delay_ms(by_service[s]), CHAIN.index(s)))


def _answer(index: int, by_service: dict[str, list[dict[str, Any]]], timeouts: Timeouts) -> _Answer:
    """Replay the chain from ``CHAIN[index]`` down: its faults in order, then its downstream call."""
    service = CHAIN[index]
    delay = 0.0
    for fault in by_service[service]:
        if fault.get("kind") == "error":
            status = fault.get("status")
            return _Answer(status if isinstance(status, int) and 400 <= status <= 599 else FAILED, delay, service)
        if fault.get("kind") == "drop":
            return _Answer(None, delay, service)
        delay += _delay(fault)
    if index + 1 == len(CHAIN):
        return _Answer(200, delay, None)
    below = _answer(index + 1, by_service, timeouts)
    wait_ms = timeouts.caller_wait_ms(CHAIN[index + 1])
    if below.elapsed_ms >= wait_ms:
        return _Answer(FAILED, delay + wait_ms, _slowest(CHAIN[index + 1 :], by_service))
    if below.status != 200:
        return _Answer(FAILED, delay + below.elapsed_ms, below.cause)
    return _Answer(200, delay + below.elapsed_ms, None)


def _replay(by_service: dict[str, list[dict[str, Any]]], timeouts: Timeouts) -> tuple[int | None, str | None]:
    """The gateway's answer to the generator and the service to blame, from the faults of every service."""
    gateway = _answer(0, by_service, timeouts)
    if gateway.elapsed_ms >= timeouts.caller_wait_ms(CHAIN[0]):
        return None, _slowest(CHAIN, by_service)
    if gateway.status == 200:
        return 200, _slowest(CHAIN, by_service)
    return gateway.status, gateway.cause


def judge(faults: Sequence[dict[str, Any]], timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Verdict:
    """The expected status and the root causes of a checkout that got ``faults`` (see the module doc)."""
    by_service: dict[str, list[dict[str, Any]]] = {service: [] for service in CHAIN}
    for fault in faults:
        if fault.get("kind") not in HARMLESS_KINDS:
            by_service.setdefault(fault.get("service", ""), []).append(fault)
    status, cause = _replay(by_service, timeouts)
    if cause is None:
        return Verdict(status, None, ())
    others = tuple(service for service in reversed(CHAIN) if service != cause and by_service[service])
    return Verdict(status, cause, (cause, *others))
