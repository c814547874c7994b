"""Rules at start: named profiles and rule files (JSON, YAML or TOML), keyed by service.

The incident profiles (``slow-dependency``, ``red-herring``, ``intermittent``,
``bad-deploy``, ``two-faults``) each imitate a real kind of incident, fit a
90 s run and are described in docs/incidents.md. ``--chaos-time-scale``
plays their windows faster (or slower): 0.1 gives a 90 s profile in 9 s.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakesvc import settings
from fakesvc.faults.inputs import InputError, parse_json, parse_yaml
from fakesvc.faults.rules import Rule, RuleError, rules_by_service, suggest
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph
from fakesvc.settings import Choice, ConfigError, Setting

PROFILES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "none": {},
    # The original services' random faults.
    "classic": {
        "payment-service": [
            {
                "kind": "error",
                "probability": 0.01,
                "status": 504,
                "exception": "TimeoutError",
                "message": "Payment gateway timeout",
            },
        ],
        "inventory-service": [
            {
                "kind": "error",
                "probability": 0.05,
                "status": 503,
                "exception": "ConnectionError",
                "message": "Inventory DB unavailable",
            },
        ],
    },
    # A demo incident: 20 s of baseline, 25 s of a degrading inventory database, then recovery.
    "incident": {
        "inventory-service": [
            {"kind": "latency", "probability": 0.6, "latency_ms": [2500, 3500], "start_s": 20, "duration_s": 25},
            {
                "kind": "error",
                "probability": 0.3,
                "status": 503,
                "exception": "ConnectionError",
                "message": "Inventory DB connection pool exhausted",
                "start_s": 20,
                "duration_s": 25,
            },
        ],
    },
    # A slow dependency: inventory's database answers slowly (WARNINGs only): 1.2-1.8 s (still in time) or 2.5-4 s
    # (payment gives up after 2 s), never near the timeout. Payment's timeouts are the only ERRORs below the
    # gateway, so the deepest ERROR is not the cause.
    "slow-dependency": {
        "inventory-service": [
            {"kind": "latency", "probability": 0.3, "latency_ms": [1200, 1800], "start_s": 15, "duration_s": 60},
            {"kind": "latency", "probability": 0.4, "latency_ms": [2500, 4000], "start_s": 15, "duration_s": 60},
        ],
    },
    # A red herring: inventory logs a retried cache miss at ERROR all run long (harmless); the real cause is
    # payment, slowed to 1.5-3.5 s (WARNINGs, well within the gateway's 5 s) for 60 s. The deepest ERROR points at
    # the wrong service.
    "red-herring": {
        "inventory-service": [
            {
                "kind": "noise",
                "probability": 0.4,
                "exception": "TimeoutError",
                "message": "Cache miss for {key}: redis GET timed out after 50 ms (retried, served from DB)",
            },
        ],
        "payment-service": [
            {"kind": "latency", "probability": 0.5, "latency_ms": [1500, 3500], "start_s": 15, "duration_s": 60},
        ],
    },
    # Intermittent: 4 % of payments fail for 80 s (a flaky connection to the card processor).
    "intermittent": {
        "payment-service": [
            {
                "kind": "error",
                "probability": 0.04,
                "status": 502,
                "exception": "ConnectionResetError",
                "message": "Card processor connection reset by peer",
                "start_s": 5,
                "duration_s": 80,
            },
        ],
    },
    # A bad deploy: payment v2 goes out at 20 s (an INFO marker), fails 30 % of payments, is rolled back at 60 s.
    "bad-deploy": {
        "payment-service": [
            {
                "kind": "error",
                "probability": 0.3,
                "status": 500,
                "exception": "AttributeError",
                "message": "'NoneType' object has no attribute 'issuer_id'",
                "start_s": 20,
                "duration_s": 40,
                "start_log": "Deploy payment-service v2",
                "end_log": "Rollback payment-service to v1",
            },
        ],
    },
    # Two faults: inventory's connection pool runs dry (15-60 s) while payment is slowed (35-75 s); a checkout in
    # the overlap can be slowed by payment and failed by inventory: both are its root causes.
    "two-faults": {
        "inventory-service": [
            {
                "kind": "error",
                "probability": 0.3,
                "status": 503,
                "exception": "ConnectionError",
                "message": "Inventory DB connection pool exhausted",
                "start_s": 15,
                "duration_s": 45,
            },
        ],
        "payment-service": [
            {"kind": "latency", "probability": 0.5, "latency_ms": [1500, 3000], "start_s": 35, "duration_s": 40},
        ],
    },
}
# The shop graph's incidents (fakesvc/graph/graphs/shop.yaml), each with a trap for an analyser that blames
# the deepest or loudest ERROR. Same length as the checkout's: 90 s, windows from 15 s.
SHOP_PROFILES: dict[str, dict[str, list[dict[str, Any]]]] = {
    "none": {},
    # The shared catalogue degrades (15-75 s): browse pages and orders fail through it, while recommendations,
    # which also call it, fall back quietly. Three callers' ERRORs and WARNINGs name one dependency.
    "catalog-outage": {
        "productcatalogservice": [
            {
                "kind": "error",
                "probability": 0.3,
                "status": 503,
                "exception": "ConnectionError",
                "message": "Catalog DB connection pool exhausted",
                "start_s": 15,
                "duration_s": 60,
            },
        ],
    },
    # The confirmation email is down all run (503 every time), behind a fallback: orders still succeed. Its
    # ERRORs are loud and harmless, and the slow payments (20-60 s, 0.6-1.2 s, in time) are the real incident.
    "email-down": {
        "emailservice": [
            {
                "kind": "error",
                "status": 503,
                "exception": "ConnectionRefusedError",
                "message": "SMTP relay refused the connection",
            },
        ],
        "paymentservice": [
            {"kind": "latency", "probability": 0.5, "latency_ms": [600, 1200], "start_s": 20, "duration_s": 40},
        ],
    },
    # A slow-only dependency: currency conversion slows to 0.4-0.9 s (15-75 s), in time for its callers' 1 s:
    # WARNINGs only, no ERROR anywhere, every page slower.
    "slow-currency": {
        "currencyservice": [
            {"kind": "latency", "probability": 0.6, "latency_ms": [400, 900], "start_s": 15, "duration_s": 60},
        ],
    },
    # The cart's cache stalls (30-60 s) past the cart's 0.5 s: the cart's 504s fail pages and orders, and the
    # cause is one hop below the service whose ERROR says "timeout".
    "cache-stall": {
        "redis-cart": [
            {"kind": "hang", "probability": 0.25, "hang_s": 1.0, "start_s": 30, "duration_s": 30},
        ],
    },
}
# Each graph's profiles; a graph without any has only "none".
GRAPH_PROFILES: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {"checkout": PROFILES, "shop": SHOP_PROFILES}
PROFILE_NAMES = tuple(PROFILES)  # the checkout's
ALL_PROFILE_NAMES = tuple(dict.fromkeys(name for profiles in GRAPH_PROFILES.values() for name in profiles))


def load_chaos_file(path: str, graph: Graph | None = None) -> dict[str, tuple[Rule, ...]]:
    """Rules keyed by service from a JSON, YAML or TOML file (by suffix), checked against ``graph`` (default: checkout).

    Read strictly: a key written twice is refused, naming it and where.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise RuleError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    suffix = file.suffix.lower()
    if suffix == ".toml":
        try:
            document: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleError(f"{path}: not valid TOML: {exc}") from None
    elif suffix in (".yaml", ".yml"):
        document = parse_yaml(text, path)
    else:
        document = parse_json(text, path)
    return rules_by_service(document, path, graph)


def profile_rules(name: str, graph: Graph | None = None) -> dict[str, tuple[Rule, ...]]:
    """A named profile's rules for the graph (default: checkout); a profile of another graph is refused."""
    graph = graph or load_graph("checkout")
    profiles = GRAPH_PROFILES.get(graph.name, {"none": {}})
    if name not in profiles:
        owners = [other for other, named in GRAPH_PROFILES.items() if name in named]
        hint = f" (it is for graph {', '.join(owners)})" if owners else suggest(name, profiles)
        raise RuleError(f"profile {name!r} is not for graph {graph.name}{hint} (use {', '.join(profiles)})")
    return rules_by_service(profiles[name], f"profile {name}", graph)


class ProfileChoice(Choice):
    """``--chaos-profile``: one of every graph's profiles; a typo gets its nearest name (``incidnet``: ``incident``)."""

    def __call__(self, raw: str) -> str:
        value = raw.strip().lower()
        if value not in self.allowed:
            raise ValueError(f"unknown profile{suggest(value, self.allowed)}; must be one of {', '.join(self.allowed)}")
        return value


@dataclass(frozen=True)
class ChaosConfig:
    """The rules each service starts with, and the token that guards changing them."""

    rules: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    admin_token: str | None = None


MAX_TIME_SCALE = 100.0  # a 7-day window stretched 100 times still has a date


def time_scale(raw: str) -> float:
    """A positive factor for the rules' schedules, at most :data:`MAX_TIME_SCALE`."""
    value = settings.positive_float(raw)
    if value > MAX_TIME_SCALE:
        raise ValueError(f"must be a number > 0 and <= {MAX_TIME_SCALE:g}")
    return value


# Declared once: the services and the sink (``python -m fakesvc.sink``) read the same token.
ADMIN_TOKEN = Setting("FAKESVC_ADMIN_TOKEN", "--admin-token", None, settings.text, "token for the fault-control routes")
CHAOS_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_CHAOS", "--chaos", None, settings.text, "fault rules file (JSON, YAML or TOML), keyed by service"),
    Setting(
        "FAKESVC_CHAOS_PROFILE",
        "--chaos-profile",
        "none",
        ProfileChoice(ALL_PROFILE_NAMES),
        "named fault profile (each is for one graph: docs/incidents.md)",
    ),
    Setting(
        "FAKESVC_CHAOS_TIME_SCALE",
        "--chaos-time-scale",
        1.0,
        time_scale,
        "multiplies the start_s and duration_s of the rules given at start (0.1: a 90 s profile in 9 s)",
    ),
    ADMIN_TOKEN,
)


def chaos_config(args: Any = None, environ: Mapping[str, str] | None = None, graph: Graph | None = None) -> ChaosConfig:
    """Rules from the profile, then the file (a file's service replaces the profile's), on the time scale.

    Both are checked against ``graph`` (default: checkout): its services and routes.
    """
    values = settings.resolve(CHAOS_SETTINGS, args, environ)
    try:
        rules = dict(profile_rules(values["chaos_profile"], graph))
    except InputError as exc:
        raise ConfigError(f"--chaos-profile: {exc}") from None
    try:
        if values["chaos"]:
            rules.update(load_chaos_file(values["chaos"], graph))
    except InputError as exc:
        raise ConfigError(f"--chaos: {exc}") from None
    scale = values["chaos_time_scale"]
    if scale != 1.0:
        rules = {
            service: tuple(rule.scaled(scale) for rule in service_rules) for service, service_rules in rules.items()
        }
    return ChaosConfig(rules, values["admin_token"] or None)
