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


class SinkFaultError(ValueError):
    """Fault settings that cannot be used, and why."""


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


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SinkFaultError(f"{name}: must be a number >= 0")
    return float(value)


def parse_faults(payload: Any) -> SinkFaults:
    """Faults from a JSON object such as ``{"error_rate": 0.3, "outages": [{"start_s": 0, "duration_s": 5}]}``."""
    if not isinstance(payload, dict):
        raise SinkFaultError("body must be a JSON object")
    unknown = sorted(set(payload) - _KEYS)
    if unknown:
        raise SinkFaultError(f"{unknown[0]}: unknown key (allowed: {', '.join(sorted(_KEYS))})")
    values: dict[str, Any] = {}
    if "error_rate" in payload:
        values["error_rate"] = _non_negative("error_rate", payload["error_rate"])
        if values["error_rate"] > 1:
            raise SinkFaultError("error_rate: must be between 0 and 1")
    if "error_status" in payload:
        status = payload["error_status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise SinkFaultError("error_status: must be an HTTP status from 400 to 599")
        values["error_status"] = status
    if "latency_ms" in payload:
        values["latency_ms"] = _non_negative("latency_ms", payload["latency_ms"])
    if payload.get("retry_after_s") is not None:
        values["retry_after_s"] = _non_negative("retry_after_s", payload["retry_after_s"])
    if payload.get("seed") is not None:
        if isinstance(payload["seed"], bool) or not isinstance(payload["seed"], int):
            raise SinkFaultError("seed: must be a whole number")
        values["seed"] = payload["seed"]
    if "outages" in payload:
        outages = payload["outages"]
        if not isinstance(outages, list):
            raise SinkFaultError("outages: must be a list of {start_s, duration_s}")
        parsed = []
        for index, outage in enumerate(outages):
            if not isinstance(outage, dict) or set(outage) != {"start_s", "duration_s"}:
                raise SinkFaultError(f'outages[{index}]: must be {{"start_s": ..., "duration_s": ...}}')
            parsed.append(
                Outage(
                    _non_negative(f"outages[{index}].start_s", outage["start_s"]),
                    _non_negative(f"outages[{index}].duration_s", outage["duration_s"]),
                )
            )
        values["outages"] = tuple(parsed)
    return SinkFaults(**values)


def parse_outage(raw: str) -> Outage:
    """``START:DURATION`` in seconds, for the command line."""
    start, sep, duration = raw.partition(":")
    try:
        if not sep:
            raise ValueError
        return Outage(_non_negative("start", float(start)), _non_negative("duration", float(duration)))
    except (ValueError, SinkFaultError):
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
