"""One case to play, checked whole before anything starts: graph, service, fault, windows, traffic, seed.

The windows are nominal seconds (RCAEval's cases: minutes of normal traffic, a
fault, recovery); ``time_scale`` shrinks them when played, while the series
stay one row a second. Every number is finite and bounded, the service is one
of the graph's, and the fault rule is read by fakesvc's own rule parser, so a
case that cannot run is refused in one line before a process starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fakesvc import settings
from fakesvc.cases.kinds import CaseKind, KindError, case_kind
from fakesvc.faults.inputs import MAX_WINDOW_S, InputError
from fakesvc.faults.rules import parse_rules, rules_by_service, suggest
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Graph
from fakesvc.settings import ConfigError

MAX_WINDOW = 86_400.0  # a day per window: a case longer than that is a mistake, not an experiment
MAX_TIME_SCALE = 100.0
MAX_RATE = 1_000.0  # checkouts a second: past it the supervisor's own loop is the bottleneck
MAX_SEED = 2**63 - 1
MIN_PLAYED_S = 2.0  # less has no two whole seconds of series: no normal row and no anomalous one


@dataclass(frozen=True)
class Windows:
    """The case's phases, in nominal seconds, and the factor they are played at."""

    warmup_s: float = 120.0
    fault_s: float = 60.0
    recovery_s: float = 30.0
    time_scale: float = 1.0

    @property
    def played_s(self) -> float:
        """How long the traffic runs, in real seconds."""
        return (self.warmup_s + self.fault_s + self.recovery_s) * self.time_scale

    def as_dict(self) -> dict[str, float]:
        scale = self.time_scale
        return {
            "warmup_s": self.warmup_s,
            "fault_s": self.fault_s,
            "recovery_s": self.recovery_s,
            "time_scale": scale,
            "played_warmup_s": self.warmup_s * scale,
            "played_fault_s": self.fault_s * scale,
            "played_recovery_s": self.recovery_s * scale,
        }


@dataclass(frozen=True)
class CasePlan:
    """Everything one case needs to be played again the same way."""

    graph: Graph
    service: str
    kind: CaseKind
    windows: Windows
    rate: float = 10.0
    seed: int = 7
    latency_scale: float = 1.0

    @property
    def directory(self) -> str:
        """``cartservice_cpu``: RCAEval reads the service and the fault from this name, split at ``_``."""
        return f"{self.service}_{self.kind.rcaeval}"

    def chaos(self) -> dict[str, list[dict[str, Any]]]:
        """The rules document: the one fault on the one service, from the end of the warmup for the fault's length.

        Played at the time scale as ``--chaos-time-scale`` plays a rule: the window shrinks, and a memory
        fault's restart with it while its leak speeds up, so the shortened case climbs as high.
        """
        nominal = parse_rules([self.kind.rule(self.windows.warmup_s, self.windows.fault_s)])[0]
        return {self.service: [nominal.scaled(self.windows.time_scale).to_json()]}  # a memory leak speeds up too


def number(flag: str, raw: str, *, low: float = 0.0, high: float, above_low: bool = False) -> float:
    """A finite number from ``low`` (>= 0) to ``high``, or a :class:`ConfigError` naming the flag and what it got."""
    try:
        value = settings.non_negative_float(raw)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc} (got {raw[:40]!r})") from None
    if not math.isfinite(value) or value < low or (above_low and value == low) or value > high:
        relation = ">" if above_low else ">="
        raise ConfigError(f"{flag}: must be a number {relation} {low:g} and <= {high:g} (got {raw[:40]!r})")
    return value


def whole_number(flag: str, raw: str, *, high: int) -> int:
    """A whole number from 0 to ``high``."""
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20 or int(text) > high:
        raise ConfigError(f"{flag}: must be a whole number from 0 to {high} (got {raw[:40]!r})")
    return int(text)


def graph_named(raw: str) -> Graph:
    """A built-in graph or a graph file, its problems on one line."""
    try:
        return load_graph(raw)
    except ConfigError as exc:
        raise ConfigError(f"--graph: {exc}".replace("\n", "; ")) from None


def service_of(graph: Graph, raw: str) -> str:
    """One of the graph's services, or a refusal with the nearest name."""
    if raw in graph.names:
        return raw
    hint = suggest(raw, graph.names) if len(raw) <= 64 else ""
    raise ConfigError(
        f"--service: no service {raw[:64]!r} in graph {graph.name}{hint} (services: {', '.join(graph.names)})"
    )


def kind_of(raw: str, flag: str = "--fault") -> CaseKind:
    try:
        return case_kind(raw)
    except KindError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


def windows_of(warmup: str, fault: str, recovery: str, time_scale: str) -> Windows:
    """The windows from the flags' text; a fault of no length, or a case with no whole seconds, is refused."""
    windows = Windows(
        warmup_s=number("--warmup", warmup, high=MAX_WINDOW),
        fault_s=number("--fault-s", fault, high=MAX_WINDOW, above_low=True),
        recovery_s=number("--recovery", recovery, high=MAX_WINDOW),
        time_scale=number("--time-scale", time_scale, high=MAX_TIME_SCALE, above_low=True),
    )
    if windows.played_s < MIN_PLAYED_S:
        raise ConfigError(
            f"--time-scale: the case would play {windows.played_s:g} s, less than {MIN_PLAYED_S:g} s "
            "(one row a second needs at least a normal one and an anomalous one)"
        )
    if (windows.warmup_s + windows.fault_s) * windows.time_scale > MAX_WINDOW_S:
        raise ConfigError(f"--warmup: the fault would start more than {MAX_WINDOW_S:g} s after the services")
    return windows


def check_rule(plan: CasePlan) -> None:
    """Read the case's rule with fakesvc's own parser: a kind this fakesvc cannot play is refused now, in one line."""
    try:
        rules_by_service(plan.chaos(), "case", plan.graph)
    except InputError as exc:
        raise ConfigError(f"--fault: {plan.kind.kind} cannot be played here: {exc}".replace("\n", "; ")) from None
