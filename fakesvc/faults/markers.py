"""Change markers: the INFO logs a rule's window writes when it opens and closes (``start_log``, ``end_log``).

A bad deploy is found by lining the errors up with the change that started
them. The ``bad-deploy`` profile's payment rule says ``Deploy payment-service
v2`` when its window opens and ``Rollback payment-service to v1`` when it
closes; the service logs them like any other line (stdout and the backend).
They belong to no checkout, so a window's two markers share a trace id of
their own, derived from the seed when there is one (a rerun gives the same).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from fakesvc.faults.rules import Rule

_log = structlog.get_logger("fakesvc.faults.markers")


@dataclass(frozen=True)
class Marker:
    """One log line due ``at_s`` seconds after the rules were set: a window's opening or closing."""

    at_s: float  # computed as the rule's window is (start_s, start_s + duration_s), so the two never disagree
    service: str
    edge: str  # "start" | "end"
    message: str
    trace_id: str


def window_trace_id(seed: int | None, service: str, index: int) -> str:
    """The trace id of rule ``index``'s markers: 32 hex digits, a function of the seed when there is one."""
    if seed is None:
        return secrets.token_hex(16)
    return hashlib.blake2b(f"{seed}|{service}|{index}|marker".encode(), digest_size=16).hexdigest()


def markers_for(service: str, rules: Iterable[Rule], trace_ids: dict[int, str]) -> list[Marker]:
    """Every marker of ``rules``, in the order they fall due."""
    out = []
    for index, rule in enumerate(rules):
        if rule.start_log is not None:
            out.append(Marker(rule.start_s, service, "start", rule.start_log, trace_ids[index]))
        if rule.end_log is not None and rule.duration_s is not None:
            out.append(Marker(rule.start_s + rule.duration_s, service, "end", rule.end_log, trace_ids[index]))
    return sorted(out, key=lambda marker: marker.at_s)  # stable: a start before an end due at the same time


def log_marker(marker: Marker) -> None:
    """Log the marker as its service, under its window's trace id (not the checkout that happens to be running)."""
    _log.info(marker.message, service=marker.service, request_id=marker.trace_id, window=marker.edge)
