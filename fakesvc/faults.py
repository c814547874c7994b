"""Faults users switch on (SPEC section 7): rules, seeded decisions, schedules, the /chaos API.

A rule says what to inject (``error``, ``latency``, ``hang``, ``drop``), how
often, on which route and when. Each service holds its rules in a
:class:`Chaos`; the hop skeleton asks it what to inject into each request and
applies the answer. With a seed, a decision is a pure function of (seed,
service, rule, request key), so the same seed and the same requests give the
same faults whatever the arrival order.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import time
import tomllib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from aiohttp import web

from fakesvc import SERVICE_NAMES, settings
from fakesvc.settings import ConfigError, Setting

KINDS = ("error", "latency", "hang", "drop")
INJECTED_TRACES = 10_000
_RULE_KEYS = {
    "kind", "probability", "route", "status", "message", "exception",
    "latency_ms", "hang_s", "start_s", "duration_s",
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


@dataclass(frozen=True)
class Fault:
    """What one request gets from one rule (or from a scenario, ``rule=-1``)."""

    service: str
    kind: str
    rule: int
    status: int | None
    message: str
    exception: str
    delay_s: float

    def truth(self) -> dict[str, Any]:
        """The ground-truth entry: which service, which kind, and a short human detail."""
        if self.rule < 0:
            detail = self.message
        elif self.kind == "error":
            detail = f"error {self.status} {self.exception}: {self.message} (rule {self.rule})"
        elif self.kind in ("latency", "hang"):
            detail = f"{self.kind} {self.delay_s * 1000:.0f} ms (rule {self.rule})"
        else:
            detail = f"connection dropped (rule {self.rule})"
        return {"service": self.service, "kind": self.kind, "detail": detail}


def _unit(seed: int, service: str, index: int, key: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on its inputs."""
    digest = hashlib.blake2b(f"{seed}|{service}|{index}|{key}|{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class Chaos:
    """One service's fault rules, its seeded decisions, and what it injected lately."""

    def __init__(
        self,
        service: str,
        rules: tuple[Rule, ...] = (),
        *,
        seed: int | None = None,
        hang_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.seed = seed
        self.hang_s = hang_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._random = random.Random()
        self._injected: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rules; schedules count from now."""
        self._rules = tuple(rules)
        self._set_at = self._clock()
        self._set_at_wall = self._wall_clock()

    def clear(self) -> None:
        self.set_rules(())

    def _active(self, rule: Rule, now: float) -> bool:
        elapsed = now - self._set_at
        if elapsed < rule.start_s:
            return False
        return rule.duration_s is None or elapsed < rule.start_s + rule.duration_s

    def _draw(self, index: int, key: str, salt: str) -> float:
        if self.seed is None:
            return self._random.random()
        return _unit(self.seed, self.service, index, key, salt)

    def decide(self, route: str, key: str) -> tuple[Fault, ...]:
        """The faults to inject into one request on ``route`` identified by ``key``."""
        if not self._rules:
            return ()
        now = self._clock()
        faults = []
        for index, rule in enumerate(self._rules):
            if rule.route is not None and rule.route != route:
                continue
            if not self._active(rule, now):
                continue
            if rule.probability < 1.0 and self._draw(index, key, "p") >= rule.probability:
                continue
            faults.append(self._fault(index, rule, key))
        return tuple(faults)

    def _fault(self, index: int, rule: Rule, key: str) -> Fault:
        delay_s = 0.0
        if rule.kind == "latency":
            low, high = rule.latency_ms
            delay_s = (low + (high - low) * self._draw(index, key, "latency")) / 1000
        elif rule.kind == "hang":
            delay_s = self.hang_s if rule.hang_s is None else rule.hang_s
        status = rule.status if rule.kind == "error" else None
        return Fault(self.service, rule.kind, index, status, rule.message, rule.exception, delay_s)

    def record(self, trace_id: str, faults: Iterable[Fault]) -> None:
        """Remember what this service injected into the latest request of a trace.

        Bounded (oldest forgotten first); a later request with the same trace
        id (a rerun with the same seed) replaces the entry.
        """
        self._injected[trace_id] = [fault.truth() for fault in faults]
        self._injected.move_to_end(trace_id)
        if len(self._injected) > INJECTED_TRACES:
            self._injected.popitem(last=False)

    def injected(self, trace_id: str) -> list[dict[str, Any]]:
        return list(self._injected.get(trace_id, ()))

    def windows(self) -> list[dict[str, Any]]:
        """Each scheduled rule's absolute window, so an incident's start and end can be scored."""
        out = []
        for index, rule in enumerate(self._rules):
            if not rule.start_s and rule.duration_s is None:
                continue
            start = self._set_at_wall + rule.start_s
            end = None if rule.duration_s is None else start + rule.duration_s
            out.append({
                "service": self.service,
                "rule": index,
                "kind": rule.kind,
                "detail": rule.describe(),
                "start": _iso(start),
                "end": None if end is None else _iso(end),
            })
        return out

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "service": self.service,
            "seed": self.seed,
            "rules": [rule.to_json() for rule in self._rules],
            "active": [self._active(rule, now) for rule in self._rules],
            "windows": self.windows(),
        }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).isoformat()


# -- the control API --------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def chaos_routes(
    chaos: Chaos,
    *,
    admin_token: str | None,
    bind_host: str,
    downstream_windows: Callable[[], Awaitable[list[dict[str, Any]]]] | None = None,
) -> list[web.RouteDef]:
    """``GET/PUT/DELETE /chaos``, ``GET /chaos/windows`` and ``GET /chaos/injected/{trace_id}``.

    Changing rules needs ``Authorization: Bearer <token>`` when a token is set,
    and is refused outright off loopback without one. ``/chaos/windows`` adds
    the windows of the services downstream, so the gateway answers for the chain.
    """

    def refused(request: web.Request) -> web.Response | None:
        if admin_token is None:
            if _is_loopback(bind_host):
                return None
            return web.json_response(
                {"detail": "fault control is off: set FAKESVC_ADMIN_TOKEN to change rules off loopback"},
                status=403,
            )
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        offered = offered or request.headers.get("X-Admin-Token", "")
        if hmac.compare_digest(offered.encode(), admin_token.encode()):
            return None
        return web.json_response({"detail": "a valid admin token is required"}, status=401)

    async def get_rules(_request: web.Request) -> web.Response:
        return web.json_response(chaos.snapshot())

    async def put_rules(request: web.Request) -> web.Response:
        if (denied := refused(request)) is not None:
            return denied
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.json_response({"detail": "body must be JSON: {\"rules\": [...]}"}, status=400)
        if not isinstance(payload, dict) or "rules" not in payload:
            return web.json_response({"detail": 'body must be {"rules": [...]}'}, status=400)
        try:
            rules = parse_rules(payload["rules"])
        except RuleError as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        chaos.set_rules(rules)
        return web.json_response(chaos.snapshot())

    async def delete_rules(request: web.Request) -> web.Response:
        if (denied := refused(request)) is not None:
            return denied
        chaos.clear()
        return web.json_response(chaos.snapshot())

    async def get_windows(_request: web.Request) -> web.Response:
        windows = chaos.windows()
        if downstream_windows is not None:
            windows += await downstream_windows()
        return web.json_response(windows)

    async def get_injected(request: web.Request) -> web.Response:
        trace_id = request.match_info["trace_id"]
        return web.json_response({"trace_id": trace_id, "faults": chaos.injected(trace_id)})

    return [
        web.get("/chaos", get_rules),
        web.put("/chaos", put_rules),
        web.delete("/chaos", delete_rules),
        web.get("/chaos/windows", get_windows),
        web.get("/chaos/injected/{trace_id}", get_injected),
    ]


# -- files and profiles -----------------------------------------------------------------

PROFILES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "none": {},
    # The original services' random faults.
    "classic": {
        "payment-service": [
            {"kind": "error", "probability": 0.01, "status": 504, "exception": "TimeoutError",
             "message": "Payment gateway timeout"},
        ],
        "inventory-service": [
            {"kind": "error", "probability": 0.05, "status": 503, "exception": "ConnectionError",
             "message": "Inventory DB unavailable"},
        ],
    },
    # A demo incident: 20 s of baseline, 25 s of a degrading inventory database, then recovery.
    "incident": {
        "inventory-service": [
            {"kind": "latency", "probability": 0.6, "latency_ms": [2500, 3500], "start_s": 20, "duration_s": 25},
            {"kind": "error", "probability": 0.3, "status": 503, "exception": "ConnectionError",
             "message": "Inventory DB connection pool exhausted", "start_s": 20, "duration_s": 25},
        ],
    },
}
PROFILE_NAMES = tuple(PROFILES)


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


def load_chaos_file(path: str) -> dict[str, tuple[Rule, ...]]:
    """Rules keyed by service from a JSON or TOML file (by suffix)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        document = tomllib.loads(text) if file.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path}: not valid {'TOML' if file.suffix == '.toml' else 'JSON'}: {exc}") from None
    return rules_by_service(document, path)


def profile_rules(name: str) -> dict[str, tuple[Rule, ...]]:
    if name not in PROFILES:
        raise RuleError(f"unknown profile {name!r} (use {', '.join(PROFILE_NAMES)})")
    return rules_by_service(PROFILES[name], f"profile {name}")


@dataclass(frozen=True)
class ChaosConfig:
    """The rules each service starts with, and the token that guards changing them."""

    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    admin_token: str | None = None


CHAOS_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_CHAOS", "--chaos", None, settings.text, "fault rules file (JSON or TOML), keyed by service"),
    Setting("FAKESVC_CHAOS_PROFILE", "--chaos-profile", "none", settings.choice(*PROFILE_NAMES), "named fault profile"),
    Setting("FAKESVC_ADMIN_TOKEN", "--admin-token", None, settings.text, "token for the fault-control routes"),
)


def chaos_config(args: Any = None, environ: Mapping[str, str] | None = None) -> ChaosConfig:
    """Rules from the profile, then the file (a file's service replaces the profile's)."""
    values = settings.resolve(CHAOS_SETTINGS, args, environ)
    try:
        rules = dict(profile_rules(values["chaos_profile"]))
        if values["chaos"]:
            rules.update(load_chaos_file(values["chaos"]))
    except RuleError as exc:
        raise ConfigError(f"--chaos: {exc}") from None
    return ChaosConfig(rules, values["admin_token"] or None)
