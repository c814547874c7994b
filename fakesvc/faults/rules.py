"""Fault rules (SPEC section 7): what to inject, how often, where and when; parsed strictly.

A malformed rule is refused with the place of the error (``rules[1].probability``),
so an operator's ``PUT /chaos`` or rules file says exactly what to fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from fakesvc.faults import noise
from fakesvc.faults.inputs import (
    MAX_DELAY_MS,
    MAX_WINDOW_S,
    InputError,
    key_path,
    number,
    show_key,
    text,
    whole_number,
)
from fakesvc.graph.load import METHODS, load_graph
from fakesvc.graph.model import Graph
from fakesvc.raising import exception_problem

KINDS = ("error", "latency", "hang", "drop", "noise", "cpu", "memory", "loss")
HARMLESS_KINDS = ("noise",)  # logged and recorded, but they never fail, slow or explain a checkout
# Faults of the whole service, not of a request: in force through their window, they change its resources
# (fakesvc/service/resources.py), and a request records one only when it felt it.
RESOURCE_KINDS = ("cpu", "memory")
REQUEST_KEYS = ("probability", "route", "method")  # what a resource fault cannot take: it has no request to pick
# The keys every rule may have, and those only one kind uses (a key of another kind is refused, not ignored).
COMMON_KEYS = ("kind", "probability", "route", "method", "start_s", "duration_s", "start_log", "end_log")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "error": ("status", "message", "exception"),
    "latency": ("latency_ms",),
    "hang": ("hang_s",),
    "drop": (),
    "noise": ("message", "exception"),
    "cpu": ("factor", "capacity_share"),
    "memory": ("leak_mb_per_s", "limit_mb", "restart_s"),
    "loss": ("delay_ms",),
}
# The bounds of each resource fault's numbers: (low, high); a share of nothing or a factor below one means no fault.
RESOURCE_BOUNDS: dict[str, tuple[float, float]] = {
    "factor": (1.0, 100.0),
    "capacity_share": (0.001, 1.0),
    "leak_mb_per_s": (0.001, 100_000.0),
    "limit_mb": (1.0, 1_000_000.0),
    "restart_s": (0.0, 3600.0),
    "delay_ms": (0.0, 600_000.0),
}
LOSS_PROBABILITY = 0.1  # a loss rule's default share of calls lost (the other kinds default to every request)
_RULE_KEYS = (*COMMON_KEYS, *dict.fromkeys(key for keys in KIND_KEYS.values() for key in keys))


# The bounds of every value a rule holds (the README lists them): nothing unbounded reaches a timer.
MAX_RULES = 100
MAX_HANG_S = 3600.0
MAX_MESSAGE_CHARS = 1024
MAX_EXCEPTION_CHARS = 64
MAX_ROUTE_CHARS = 256
MAX_METHOD_CHARS = 16  # longer is no method at all (the longest is 6), refused before it is compared


Routes = Collection[str] | Mapping[str, Collection[str]]  # the paths a service serves, or each with its methods


class RuleError(InputError):
    """A rule's shape, a rule file or a profile that cannot be used, and where (a bad value is an InputError)."""


@dataclass(frozen=True)
class Rule:
    """One switchable fault."""

    kind: str
    probability: float = 1.0
    route: str | None = None
    method: str | None = None  # only requests of this method (a path can serve several)
    status: int = 500
    message: str = "Injected fault"
    exception: str = "RuntimeError"
    latency_ms: tuple[float, float] = (0.0, 0.0)
    hang_s: float | None = None
    start_s: float = 0.0
    duration_s: float | None = None
    start_log: str | None = None  # an INFO log the service writes when the window opens (a deploy marker)
    end_log: str | None = None  # ... and when it closes (the rollback)
    factor: float = 4.0  # cpu: simulated work costs this many times more
    capacity_share: float = 0.25  # cpu: the share of the service's capacity left to its requests
    leak_mb_per_s: float = 5.0  # memory: how fast it climbs
    limit_mb: float = 512.0  # memory: where the service is killed
    restart_s: float = 5.0  # memory: how long it refuses connections once killed
    delay_ms: float = 200.0  # loss: how late a lost call that is not cut answers (a retransmission)

    def scaled(self, factor: float) -> Rule:
        """The same rule with its schedule (``start_s``, ``duration_s``) multiplied by ``factor``.

        A memory fault's restart is part of its schedule, and its leak speeds up as
        much, so a shortened window still climbs to the limit it would have reached.
        """
        duration_s = None if self.duration_s is None else self.duration_s * factor
        scaled = replace(self, start_s=self.start_s * factor, duration_s=duration_s)
        if self.kind == "memory" and factor > 0:
            scaled = replace(scaled, restart_s=self.restart_s * factor, leak_mb_per_s=self.leak_mb_per_s / factor)
        return scaled

    def to_json(self) -> dict[str, Any]:
        """The rule as written, with only the keys that matter for its kind."""
        out: dict[str, Any] = {"kind": self.kind, "probability": self.probability}
        if self.route is not None:
            out["route"] = self.route
        if self.method is not None:
            out["method"] = self.method
        if self.kind == "error":
            out.update(status=self.status, message=self.message, exception=self.exception)
        if self.kind == "noise":
            out.update(message=self.message, exception=self.exception)
        if self.kind == "latency":
            low, high = self.latency_ms
            out["latency_ms"] = low if low == high else [low, high]
        if self.kind == "hang" and self.hang_s is not None:
            out["hang_s"] = self.hang_s
        if self.kind in RESOURCE_KINDS:
            del out["probability"]  # a resource fault has no request to pick
        for key in KIND_KEYS[self.kind] if self.kind in (*RESOURCE_KINDS, "loss") else ():
            out[key] = getattr(self, key)
        if self.start_s:
            out["start_s"] = self.start_s
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        for key in ("start_log", "end_log"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def describe(self) -> str:
        if self.kind == "error":
            return f"error {self.status} {self.exception}: {self.message}"
        if self.kind == "latency":
            low, high = self.latency_ms
            return f"latency {low:g} ms" if low == high else f"latency {low:g}-{high:g} ms"
        if self.kind == "hang":
            return "hang" if self.hang_s is None else f"hang {self.hang_s:g} s"
        if self.kind == "noise":
            return f"noise: {self.message}"
        if self.kind == "cpu":
            return f"cpu: work x{self.factor:g}, capacity x{self.capacity_share:g}"
        if self.kind == "memory":
            return f"memory: leak {self.leak_mb_per_s:g} MB/s to {self.limit_mb:g} MB, restart {self.restart_s:g} s"
        if self.kind == "loss":
            return f"loss: {self.probability:g} of calls cut or {self.delay_ms:g} ms late"
        return "drop connection"


def suggest(word: Any, options: Iterable[str]) -> str:
    """`` (did you mean 'latency_ms'?)`` when ``word`` is close to one of ``options``, else nothing."""
    found = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _rule(where: str, raw: Any, routes: Routes | None) -> Rule:
    if not isinstance(raw, dict):
        raise RuleError(f"{where}: must be an object")
    for key in raw:
        if key not in _RULE_KEYS:
            hint = suggest(key, _RULE_KEYS) if isinstance(key, str) else ""
            raise RuleError(f"{key_path(where, key)}: unknown key{hint} (allowed: {', '.join(_RULE_KEYS)})")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        got = f" (got {show_key(kind)}){suggest(kind, KINDS)}" if isinstance(kind, str) else ""
        raise RuleError(f"{where}.kind: must be one of {', '.join(KINDS)}{got}")
    for key in raw:
        if kind in RESOURCE_KINDS and key in REQUEST_KEYS:
            takes = ", ".join(name for name in (*COMMON_KEYS, *KIND_KEYS[kind]) if name not in REQUEST_KEYS)
            raise RuleError(
                f"{where}.{key}: does not apply to a {kind} rule: it takes the whole service, every request "
                f"(a {kind} rule takes {takes})"
            )
        if key not in COMMON_KEYS and key not in KIND_KEYS[kind]:
            takes = ", ".join((*COMMON_KEYS, *KIND_KEYS[kind]))
            users = " and ".join(other for other, keys in KIND_KEYS.items() if key in keys)
            raise RuleError(
                f"{where}.{key}: does not apply to a {kind} rule (it is for {users}); a {kind} rule takes {takes}"
            )
    values: dict[str, Any] = {"kind": kind}
    if kind == "noise":
        values.update(message=noise.DEFAULT_MESSAGE, exception=noise.DEFAULT_EXCEPTION)
    if kind == "loss":
        values["probability"] = LOSS_PROBABILITY
    for key in KIND_KEYS[kind]:
        if key in RESOURCE_BOUNDS and key in raw:
            low, high = RESOURCE_BOUNDS[key]
            values[key] = number(f"{where}.{key}", raw[key], low=low, high=high)
    if "probability" in raw:
        values["probability"] = number(f"{where}.probability", raw["probability"], low=0, high=1)
    if "route" in raw:
        values["route"] = _route(f"{where}.route", raw["route"], routes)
    if "method" in raw:
        values["method"] = _method(f"{where}.method", raw["method"], values.get("route"), routes)
    if "status" in raw:
        values["status"] = whole_number(f"{where}.status", raw["status"], low=400, high=599)
    if "message" in raw:
        values["message"] = text(f"{where}.message", raw["message"], max_chars=MAX_MESSAGE_CHARS)
    if "exception" in raw:
        name = text(f"{where}.exception", raw["exception"], max_chars=MAX_EXCEPTION_CHARS)
        problem = exception_problem(name)
        if problem is not None:
            raise RuleError(f"{where}.exception: {problem}")
        values["exception"] = name
    if "latency_ms" in raw:
        values["latency_ms"] = _latency(f"{where}.latency_ms", raw["latency_ms"])
    elif kind == "latency":
        raise RuleError(f"{where}.latency_ms: a latency rule needs latency_ms (a number or [min, max])")
    for key, high in (("hang_s", MAX_HANG_S), ("start_s", MAX_WINDOW_S), ("duration_s", MAX_WINDOW_S)):
        if key in raw:
            values[key] = number(f"{where}.{key}", raw[key], low=0, high=high)
    for key in ("start_log", "end_log"):
        if key in raw:
            values[key] = text(f"{where}.{key}", raw[key], max_chars=MAX_MESSAGE_CHARS)
    if "end_log" in values and "duration_s" not in values:
        raise RuleError(f"{where}.end_log: needs duration_s (a window that never closes logs no end)")
    return Rule(**values)


def _route(where: str, value: Any, routes: Routes | None) -> str:
    route = text(where, value, max_chars=MAX_ROUTE_CHARS)
    if not route.startswith("/"):
        raise RuleError(f"{where}: must be a path pattern starting with /")
    if routes is not None and route not in routes:
        raise RuleError(f"{where}: the service serves no route {route!r} (use {', '.join(sorted(routes))})")
    return route


def _method(where: str, value: Any, route: str | None, routes: Routes | None) -> str:
    method = text(where, value, max_chars=MAX_METHOD_CHARS).upper()
    if method not in METHODS:
        raise RuleError(f"{where}: must be one of {', '.join(METHODS)}")
    if isinstance(routes, Mapping):
        served = routes[route] if route is not None else {m for methods in routes.values() for m in methods}
        if method not in served:
            on = f"on {route}" if route is not None else "on any route"
            raise RuleError(f"{where}: the service serves no {method} {on} (it serves {', '.join(sorted(served))})")
    return method


def _latency(where: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list):
        delay = number(where, value, low=0, high=MAX_DELAY_MS)
        return delay, delay
    if len(value) != 2:
        raise RuleError(f"{where}: a range is [min, max]")
    low = number(f"{where}[0]", value[0], low=0, high=MAX_DELAY_MS)
    high = number(f"{where}[1]", value[1], low=0, high=MAX_DELAY_MS)
    if high < low:
        raise RuleError(f"{where}: max must be >= min")
    return low, high


def parse_rules(payload: Any, where: str = "rules", routes: Routes | None = None) -> tuple[Rule, ...]:
    """Rules from JSON: a list of rule objects, or ``{"rules": [...]}``; strict, and whole or nothing.

    ``routes``, when known, are the paths the service serves (a mapping to their
    methods checks ``method`` too): a rule naming another could never fire, so it is refused.
    """
    if isinstance(payload, dict) and set(payload) == {"rules"}:
        payload = payload["rules"]
    if not isinstance(payload, list):
        raise RuleError(f'{where}: must be a list of rules or {{"rules": [...]}}')
    if len(payload) > MAX_RULES:
        raise RuleError(f"{where}: at most {MAX_RULES} rules")
    return tuple(_rule(f"{where}[{index}]", raw, routes) for index, raw in enumerate(payload))


def service_routes(graph: Graph, service: str) -> dict[str, tuple[str, ...]]:
    """What a rule of ``service`` may name: each path it serves, and the methods it serves there."""
    served: dict[str, tuple[str, ...]] = {}
    for route in graph.service(service).routes:
        served[route.path] = (*served.get(route.path, ()), route.method)
    return served


def rules_by_service(document: Any, where: str, graph: Graph | None = None) -> dict[str, tuple[Rule, ...]]:
    """``{"inventory-service": [rules...], ...}`` validated against the graph (default: checkout); unknown services are errors."""
    graph = graph or load_graph("checkout")
    if not isinstance(document, Mapping):
        raise RuleError(f"{where}: must map service names to lists of rules")
    out = {}
    for service, rules in document.items():
        if service not in graph.names:
            hint = suggest(service, graph.names) if isinstance(service, str) else ""
            raise RuleError(f"{where}: unknown service {show_key(service)}{hint} (use {', '.join(graph.names)})")
        out[service] = parse_rules(rules, f"{where}[{service}]", service_routes(graph, service))
    return out
