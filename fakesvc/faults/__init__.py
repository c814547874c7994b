"""Faults users switch on (SPEC section 7): rules, seeded decisions, the /chaos API, profiles.

A rule says what to inject (``error``, ``latency``, ``hang``, ``drop``, or
``noise``: a harmless ERROR log), how often, on which route and when, and may
log markers when its window opens and closes (a deploy and its rollback).
Each service holds its rules in a :class:`Chaos`; the hop skeleton asks it
what to inject into each request and applies the answer.
"""

from fakesvc.faults.chaos import INJECTED_TRACES, Chaos, Fault
from fakesvc.faults.control import chaos_routes, services_routes
from fakesvc.faults.inputs import InputError
from fakesvc.faults.profiles import (
    ADMIN_TOKEN,
    CHAOS_SETTINGS,
    PROFILE_NAMES,
    ChaosConfig,
    chaos_config,
    load_chaos_file,
    profile_rules,
)
from fakesvc.faults.rules import KINDS, Rule, RuleError, parse_rules

__all__ = [
    "ADMIN_TOKEN",
    "CHAOS_SETTINGS",
    "INJECTED_TRACES",
    "InputError",
    "KINDS",
    "PROFILE_NAMES",
    "Chaos",
    "ChaosConfig",
    "Fault",
    "Rule",
    "RuleError",
    "chaos_config",
    "chaos_routes",
    "load_chaos_file",
    "parse_rules",
    "profile_rules",
    "services_routes",
]
