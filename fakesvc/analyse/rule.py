"""The rule: which service a trace's evidence points at, and what kind of failure it was.

Blame travels from the edge inward: a caller that says its dependency failed
(``inventory-service did not answer within 2 s``) is passing the failure on,
not causing it. The root cause is the deepest service that has evidence of
its own failure (its own exception, a reset connection, a slow WARNING, its
own time in spans) and blames no one further in. Healthy when nothing
failed, nothing was slow and no service spent ``slow_ms`` of its own. Who
may blame whom, and what a service waits for, come from the graph's calls,
not from names in this code, so the rule holds on any graph.
docs/analyser.md walks through it, with its limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fakesvc.analyse.evidence import ServiceEvidence, TraceEvidence, View, read_evidence
from fakesvc.analyse.graphs import CallGraph, default_graph

DEFAULT_SLOW_MS = 1000.0  # the services' own threshold for a slow-hop WARNING

_KIND_OF_EDGE = {"connection": "drop", "status": "error"}


@dataclass(frozen=True)
class Judgement:
    """An incident: the services ranked from most to least likely root cause, and the kind guessed."""

    services: list[str]
    kind: str


def _own_failure(evidence: ServiceEvidence) -> bool:
    """Its own ERROR, when the request felt it: a reset connection, an ERROR span, or no span to say otherwise.

    An ERROR logged by a service whose spans all ended well did not fail the
    request (a retried cache miss, a noisy background job): it is no cause.
    """
    return evidence.own_error and (evidence.dropped or evidence.error_span or evidence.spans == 0)


def _slow(evidence: ServiceEvidence, slow_ms: float) -> bool:
    """It spent ``slow_ms`` of its own time; without spans to tell, its slow WARNING is taken at its word.

    A hop's WARNING says the hop was slow, not why: it is slow too when its
    dependency was, or when a busy host made every hop a little slower. Its
    spans say how much of the time was its own.
    """
    return evidence.self_ms >= slow_ms if evidence.spans else evidence.slow


def _kind(service: str, evidence: ServiceEvidence, found: TraceEvidence) -> str:
    """The fault kind the truth would name: from the service's own evidence, else from how its caller saw it."""
    if _own_failure(evidence):
        return "drop" if evidence.dropped else "error"
    hows = [edge.how for edge in found.edges if edge.dependency == service]
    if hows:
        if hows[0] == "timeout":
            return "latency" if evidence.answered_late else "hang"
        return _KIND_OF_EDGE[hows[0]]
    return "latency"


def judge(views: Iterable[View], slow_ms: float = DEFAULT_SLOW_MS, calls: CallGraph | None = None) -> Judgement | None:
    """The ranked services and the kind when the views show an incident, None when the checkout looks healthy.

    ``calls`` is the graph the trace ran on (default: the services' default graph).
    """
    found = read_evidence(views, calls or CallGraph.of(default_graph()))
    blamed = {edge.dependency for edge in found.edges}
    blaming = {edge.caller for edge in found.edges}

    def failed(service: str) -> bool:
        evidence = found.services[service]
        return _own_failure(evidence) or _slow(evidence, slow_ms)

    if not found.edges and not any(failed(service) for service in found.services):
        return None

    def rank(service: str) -> tuple[bool, int, float]:
        evidence = found.services[service]
        is_root = service not in blaming and (service in blamed or failed(service))
        weight = (service in blamed) + _own_failure(evidence) + _slow(evidence, slow_ms)
        return is_root, weight, evidence.self_ms

    ranked = sorted(found.services, key=rank, reverse=True)
    return Judgement(ranked, _kind(ranked[0], found.services[ranked[0]], found))
