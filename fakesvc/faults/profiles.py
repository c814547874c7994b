"""Rules at start: named profiles and rule files (JSON or TOML), keyed by service."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakesvc import settings
from fakesvc.faults.inputs import InputError
from fakesvc.faults.rules import Rule, RuleError, rules_by_service
from fakesvc.settings import ConfigError, Setting

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
}
PROFILE_NAMES = tuple(PROFILES)


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


# Declared once: the services and the sink (``python -m fakesvc.sink``) read the same token.
ADMIN_TOKEN = Setting("FAKESVC_ADMIN_TOKEN", "--admin-token", None, settings.text, "token for the fault-control routes")
CHAOS_SETTINGS: tuple[Setting, ...] = (
    Setting("FAKESVC_CHAOS", "--chaos", None, settings.text, "fault rules file (JSON or TOML), keyed by service"),
    Setting("FAKESVC_CHAOS_PROFILE", "--chaos-profile", "none", settings.choice(*PROFILE_NAMES), "named fault profile"),
    ADMIN_TOKEN,
)


def chaos_config(args: Any = None, environ: Mapping[str, str] | None = None) -> ChaosConfig:
    """Rules from the profile, then the file (a file's service replaces the profile's)."""
    values = settings.resolve(CHAOS_SETTINGS, args, environ)
    try:
        rules = dict(profile_rules(values["chaos_profile"]))
        if values["chaos"]:
            rules.update(load_chaos_file(values["chaos"]))
    except InputError as exc:
        raise ConfigError(f"--chaos: {exc}") from None
    return ChaosConfig(rules, values["admin_token"] or None)
