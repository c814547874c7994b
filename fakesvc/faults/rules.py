"""Fault rules (SPEC section 7): what to inject, how often, where and when; parsed strictly.

A malformed rule is refused with the place of the error (``rules[1].probability``),
so an operator's ``PUT /chaos`` or rules file says exactly what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fakesvc import SERVICE_NAMES

KINDS = ("error", "latency", "hang", "drop")
_RULE_KEYS = {
    "kind",
    "probability",
    "route",
    "status",
    "message",
    "exception",
    "latency_ms",
    "hang_s",
    "start_s",
    "duration_s",
}


class RuleError(ValueError):
    """A rule, a rule file or a profile that cannot be used, and where."""


@dataclass(frozen=True)
class Rule:
    """One switchable fault."""

    kind: str
    probability: float = 1.0
    route: str | None = None
    status: int = 500
    message: str = "Injected fault"
    exception: str = "RuntimeError"
    latency_ms: tuple[float, float] = (0.0, 0.0)
    hang_s: float | None = None
    start_s: float = 0.0
    duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as written, with only the keys that matter for its kind."""
        out: dict[str, Any] = {"kind": self.kind, "probability": self.probability}
        if self.route is not None:
            out["route"] = self.route
        if self.kind == "error":
            out.update(status=self.status, message=self.message, exception=self.exception)
        if self.kind == "latency":
            low, high = self.latency_ms
            out["latency_ms"] = low if low == high else [low, high]
        if self.kind == "hang" and self.hang_s is not None:
            out["hang_s"] = self.hang_s
        if self.start_s:
            out["start_s"] = self.start_s
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        return out

    def describe(self) -> str:
        if self.kind == "error":
            return f"error {self.status} {self.exception}: {self.message}"
        if self.kind == "latency":
            low, high = self.latency_ms
            return f"latency {low:g} ms" if low == high else f"latency {low:g}-{high:g} ms"
        if self.kind == "hang":
            return "hang" if self.hang_s is None else f"hang {self.hang_s:g} s"
        return "drop connection"


def _number(where: str, value: Any, *, low: float = 0.0, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(f"{where}: must be a number")
    if value < low or (high is not None and value > high) or value != value:
        bound = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
        raise RuleError(f"{where}: must be {bound}")
    return float(value)


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise RuleError(f"{where}: must be a non-empty string")
    return value


def _rule(where: str, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise RuleError(f"{where}.{unknown[0]}: unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise RuleError(f"{where}.kind: must be one of {', '.join(KINDS)}")
    values: dict[str, Any] = {"kind": kind}
    if "probability" in raw:
        values["probability"] = _number(f"{where}.probability", raw["probability"], high=1.0)
    if "route" in raw:
        route = _text(f"{where}.route", raw["route"])
        if not route.startswith("/"):
            raise RuleError(f"{where}.route: must be a path pattern starting with /")
        values["route"] = route
    if "status" in raw:
        status = raw["status"]
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise RuleError(f"{where}.status: must be an HTTP status from 400 to 599")
        values["status"] = status
    if "message" in raw:
        values["message"] = _text(f"{where}.message", raw["message"])
    if "exception" in raw:
        name = _text(f"{where}.exception", raw["exception"])
        if not name.isidentifier():
            raise RuleError(f"{where}.exception: must be an exception class name")
        values["exception"] = name
    if "latency_ms" in raw:
        latency = raw["latency_ms"]
        if isinstance(latency, list):
            if len(latency) != 2:
                raise RuleError(f"{where}.latency_ms: a range is [min, max]")
            low = _number(f"{where}.latency_ms[0]", latency[0])
            high = _number(f"{where}.latency_ms[1]", latency[1])
            if high < low:
                raise RuleError(f"{where}.latency_ms: max must be >= min")
        else:
            low = high = _number(f"{where}.latency_ms", latency)
        values["latency_ms"] = (low, high)
    elif kind == "latency":
        raise RuleError(f"{where}.latency_ms: a latency rule needs latency_ms (a number or [min, max])")
    if "hang_s" in raw:
        values["hang_s"] = _number(f"{where}.hang_s", raw["hang_s"], high=3600)
    if "start_s" in raw:
        values["start_s"] = _number(f"{where}.start_s", raw["start_s"])
    if "duration_s" in raw:
        values["duration_s"] = _number(f"{where}.duration_s", raw["duration_s"])
    return Rule(**values)


def parse_rules(payload: Any, where: str = "rules") -> tuple[Rule, ...]:
    """Rules from JSON: a list of rule objects, or ``{"rules": [...]}``; strict."""
    if isinstance(payload, dict) and set(payload) == {"rules"}:
        payload = payload["rules"]
    if not isinstance(payload, list):
        raise RuleError(f'{where}: must be a list of rules or {{"rules": [...]}}')
    return tuple(_rule(f"{where}[{index}]", raw) for index, raw in enumerate(payload))


def rules_by_service(document: Any, where: str) -> dict[str, tuple[Rule, ...]]:
    """``{"inventory-service": [rules...], ...}`` validated; unknown services are errors."""
    if not isinstance(document, Mapping):
        raise RuleError(f"{where}: must map service names to lists of rules")
    out = {}
    for service, rules in document.items():
        if service not in SERVICE_NAMES:
            raise RuleError(f"{where}: unknown service {service!r} (use {', '.join(SERVICE_NAMES)})")
        out[service] = parse_rules(rules, f"{where}[{service}]")
    return out
