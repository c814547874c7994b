"""What the analyser reads of a trace: the signals as views, and the evidence each service left.

A stored signal (ProdSentinel's ``SignalRead``: ``{id, signal_type, trace_id,
service_name, timestamp, payload}``) becomes a flat *view*. ``full_view``
keeps everything; ``summarise`` keeps only what ProdSentinel's summariser
hands its analyser, so the same rule can be scored on both. The evidence is
then read from a view the same way whatever it holds: the attributes when they
are there, the log message always.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fakesvc.analyse.graphs import CallGraph

View = dict[str, Any]

ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
SUMMARY_MAX_SIGNALS = 50  # the summariser keeps 40 errors and 10 others past this
SUMMARY_MAX_ERRORS = 40

# How a caller's message says its dependency failed (fakesvc.service.hop's wording, and any service
# that writes like an on-call engineer): each match names a dependency; a quoted answer can
# name the next one ("payment-service answered 502 (... inventory-service answered 503 ...)").
_NAME = r"(?P<{}>[A-Za-z0-9_.-]+)"
_EDGE = re.compile(
    "|".join(
        (
            _NAME.format("timeout") + r" did not answer within",
            r"connection to " + _NAME.format("connection") + r" failed",
            _NAME.format("status") + r" answered [0-9]{3}\b",
        )
    )
)
_RESET = re.compile(r"connection reset|connection dropped|_CONNECTION_RESET$", re.IGNORECASE)
_SLOW = re.compile(r"\bslow\b", re.IGNORECASE)


def summarise(signals: Sequence[dict[str, Any]]) -> list[View]:
    """ProdSentinel's summariser, reproduced: what an analyser reading its summary sees.

    Per signal it keeps the timestamp, the service name and the type; for a log
    its level and message (DEBUG logs dropped); for a span its id, duration and
    status; nothing else (no attributes, no parent span, no metric value). Past
    50 signals it keeps the first 40 ERROR/CRITICAL logs and the first 10 others.
    """
    kept: list[View] = []
    for signal in signals:
        payload = _payload(signal)
        view: View = {
            "timestamp": signal.get("timestamp"),
            "service": signal.get("service_name"),
            "type": signal.get("signal_type"),
        }
        if view["type"] == "log":
            if payload.get("level") == "DEBUG":
                continue
            view.update(level=payload.get("level"), message=payload.get("message"))
        elif view["type"] == "trace":
            view.update(
                span_id=payload.get("span_id"), duration_ms=payload.get("duration_ms"), status=payload.get("status")
            )
        kept.append(view)
    if len(kept) > SUMMARY_MAX_SIGNALS:
        errors = [view for view in kept if view.get("level") in ERROR_LEVELS]
        others = [view for view in kept if view.get("level") not in ERROR_LEVELS]
        kept = errors[:SUMMARY_MAX_ERRORS] + others[: SUMMARY_MAX_SIGNALS - SUMMARY_MAX_ERRORS]
    return kept


def full_view(signals: Sequence[dict[str, Any]]) -> list[View]:
    """Every signal whole: its payload's fields (attributes, parent span, metric value) beside the three above."""
    return [
        {
            **_payload(signal),
            "timestamp": signal.get("timestamp"),
            "service": signal.get("service_name"),
            "type": signal.get("signal_type"),
        }
        for signal in signals
    ]


def _payload(signal: dict[str, Any]) -> dict[str, Any]:
    payload = signal.get("payload")
    return payload if isinstance(payload, dict) else {}


@dataclass(frozen=True)
class Edge:
    """``caller`` says ``dependency`` failed it, and how: ``timeout``, ``connection`` or ``status``."""

    caller: str
    dependency: str
    how: str


@dataclass
class ServiceEvidence:
    """What one service's signals say about it."""

    own_error: bool = False  # an ERROR that blames no dependency: its own exception
    dropped: bool = False  # it reset a connection instead of answering
    slow: bool = False  # it said it was slow (a WARNING)
    answered_late: bool = False  # ... and finished ("took N ms"), rather than being given up on
    error_span: bool = False
    spans: int = 0
    self_ms: float = 0.0  # time spent in its own spans, not waiting for a dependency


@dataclass
class TraceEvidence:
    """Every service's evidence and the blame edges, read from a trace's views."""

    services: dict[str, ServiceEvidence] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def of(self, service: str) -> ServiceEvidence:
        return self.services.setdefault(service, ServiceEvidence())


def edges_in(caller: str, text: str, calls: CallGraph) -> list[Edge]:
    """The blame edges a message states: its first names the caller's dependency, later ones go deeper.

    A name counts only where the graph has the caller call it: a word that is
    no dependency of the service just named ("upstream answered 503" quoted in
    an exception, a service quoting its own name) blames no one.
    """
    edges = []
    for match in _EDGE.finditer(text):
        how = match.lastgroup or "status"
        dependency = match.group(how)
        if calls.calls(caller, dependency):
            edges.append(Edge(caller, dependency, how))
            caller = dependency
    return edges


def _log_evidence(found: TraceEvidence, view: View, calls: CallGraph) -> None:
    service, level, raw_message, raw_attributes = (
        str(view["service"]),
        view.get("level"),
        view.get("message"),
        view.get("attributes"),
    )
    message: str = raw_message if isinstance(raw_message, str) else ""
    attributes: dict[str, Any] = raw_attributes if isinstance(raw_attributes, dict) else {}
    evidence = found.of(service)
    if level in ERROR_LEVELS:
        edges = edges_in(service, message, calls)
        upstream, reason = attributes.get("upstream_service"), attributes.get("upstream_reason")
        if isinstance(upstream, str) and reason in ("timeout", "connection", "status"):
            direct = Edge(service, upstream, str(reason))
            edges = edges if edges and edges[0] == direct else [direct, *edges]
        found.edges.extend(edges)
        if not edges:
            evidence.own_error = True
            evidence.dropped = evidence.dropped or bool(
                _RESET.search(message) or _RESET.search(str(attributes.get("error_code", "")))
            )
    elif level == "WARNING" and (attributes.get("slow") is True or _SLOW.search(message)):
        evidence.slow = True
        evidence.answered_late = evidence.answered_late or not (attributes.get("cancelled") or "gave up" in message)


def _self_times_by_parent(spans: list[View]) -> dict[str, float]:
    """Each service's own time: a span's duration less its children's (exact, from parent links)."""
    children: dict[str, float] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        if isinstance(parent, str):
            children[parent] = children.get(parent, 0.0) + _duration(span)
    own: dict[str, float] = {}
    for span in spans:
        service = str(span.get("service"))
        own[service] = own.get(service, 0.0) + max(0.0, _duration(span) - children.get(str(span.get("span_id")), 0.0))
    return own


def _self_times_by_graph(spans: list[View], calls: CallGraph) -> dict[str, float]:
    """Each service's own time without parent links: its longest span less what the graph says it waited for.

    A summary keeps no parent span, but the graph says whom each service
    calls, in a row or at once: its longest span less its callees' (added up
    in a row, the longest of a ``parallel`` block) is its own.
    """
    longest: dict[str, float] = {}
    for span in spans:
        service = str(span.get("service"))
        longest[service] = max(longest.get(service, 0.0), _duration(span))
    return {service: max(0.0, duration - calls.waited_ms(service, longest)) for service, duration in longest.items()}


def _duration(span: View) -> float:
    value = span.get("duration_ms")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0.0
    return min(max(0.0, float(value)), 1e12)


def read_evidence(views: Iterable[View], calls: CallGraph) -> TraceEvidence:
    """The evidence in a trace's views (full or summarised: the same reading, on what is there), on ``calls``' graph."""
    found = TraceEvidence()
    spans: list[View] = []
    for view in views:
        if not isinstance(view.get("service"), str):
            continue
        if view.get("type") == "log":
            _log_evidence(found, view, calls)
        elif view.get("type") == "trace":
            spans.append(view)
            evidence = found.of(view["service"])
            evidence.spans += 1
            evidence.error_span = evidence.error_span or view.get("status") == "ERROR"
    linked = any("parent_span_id" in span for span in spans)
    for service, self_ms in (_self_times_by_parent(spans) if linked else _self_times_by_graph(spans, calls)).items():
        found.of(service).self_ms = self_ms
    for edge in found.edges:
        found.of(edge.caller)
        found.of(edge.dependency)
    return found
