"""The sink's own faults, so a sender can be tested against a misbehaving backend.

An error rate (with its status and an optional ``Retry-After``), added
latency, and outage windows during which connections are dropped unanswered.
Settable at start and at run time (``PUT /sink/faults``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fakesvc.faults.inputs import MAX_DELAY_MS, MAX_WINDOW_S, InputError, number, whole_number


@dataclass(frozen=True)
class Outage:
    """A window, in seconds from when the faults were set, during which the sink drops connections."""

    start_s: float
    duration_s: float


@dataclass(frozen=True)
class SinkFaults:
    error_rate: float = 0.0
    error_status: int = 503
    latency_ms: float = 0.0
    outages: tuple[Outage, ...] = ()
    retry_after_s: float | None = None
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_KEYS = {"error_rate", "error_status", "latency_ms", "outages", "retry_after_s", "seed"}
# Bounds of their own (the shared ones are in fakesvc.faults.inputs; the README lists all).
MAX_RETRY_AFTER_S = 3600.0
MAX_OUTAGES = 100
MAX_SEED = 2**63


def _outage(where: str, raw: Any) -> Outage:
    if not isinstance(raw, dict) or set(raw) != {"start_s", "duration_s"}:
        raise InputError(f'{where}: must be {{"start_s": ..., "duration_s": ...}}')
    return Outage(
        number(f"{where}.start_s", raw["start_s"], low=0, high=MAX_WINDOW_S),
        number(f"{where}.duration_s", raw["duration_s"], low=0, high=MAX_WINDOW_S),
    )


def parse_faults(payload: Any) -> SinkFaults:
    """Faults from a JSON object such as ``{"error_rate": 0.3, "outages": [{"start_s": 0, "duration_s": 5}]}``.

    Strict and whole: :class:`InputError` naming the key, before anything changes.
    """
    if not isinstance(payload, dict):
        raise InputError("body: must be a JSON object")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise InputError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    if "error_rate" in payload:
        values["error_rate"] = number("error_rate", payload["error_rate"], low=0, high=1)
    if "error_status" in payload:
        values["error_status"] = whole_number("error_status", payload["error_status"], low=400, high=599)
    if "latency_ms" in payload:
        values["latency_ms"] = number("latency_ms", payload["latency_ms"], low=0, high=MAX_DELAY_MS)
    if payload.get("retry_after_s") is not None:
        values["retry_after_s"] = number("retry_after_s", payload["retry_after_s"], low=0, high=MAX_RETRY_AFTER_S)
    if payload.get("seed") is not None:
        values["seed"] = whole_number("seed", payload["seed"], low=-MAX_SEED, high=MAX_SEED)
    if "outages" in payload:
        outages = payload["outages"]
        if not isinstance(outages, list) or len(outages) > MAX_OUTAGES:
            raise InputError(f"outages: must be a list of at most {MAX_OUTAGES} {{start_s, duration_s}}")
        values["outages"] = tuple(_outage(f"outages[{index}]", raw) for index, raw in enumerate(outages))
    return SinkFaults(**values)


def parse_outage(raw: str) -> Outage:
    """``START:DURATION`` in seconds, for the command line."""
    start, sep, duration = raw.partition(":")
    try:
        if not sep:
            raise ValueError
        return _outage("outage", {"start_s": float(start), "duration_s": float(duration)})
    except ValueError:  # not numbers, or an InputError
        raise ValueError("must be START:DURATION in seconds, e.g. 10:5") from None


@dataclass
class FaultState:
    """The faults in force, when they were set, and the generator behind the error rate."""

    faults: SinkFaults = field(default_factory=SinkFaults)
    clock: Callable[[], float] = time.monotonic
    set_at: float = 0.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.set(self.faults)

    def set(self, faults: SinkFaults) -> None:
        self.faults = faults
        self.set_at = self.clock()
        self.rng = random.Random(faults.seed)

    def in_outage(self) -> bool:
        elapsed = self.clock() - self.set_at
        return any(o.start_s <= elapsed < o.start_s + o.duration_s for o in self.faults.outages)

    def error(self) -> bool:
        rate = self.faults.error_rate
        return rate > 0 and self.rng.random() < rate
