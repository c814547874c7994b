"""A graph's service call graph as the root-cause methods read it: JSON, Graphviz DOT or a CSV edge list.

``python -m fakesvc.graph export GRAPH --format json|dot|csv`` prints these.
One edge per caller -> callee, however many calls make it, carrying the
callee's routes the caller reaches (named as the callee's signals name them,
``GET /stock/{item_id}``), whether any of those calls runs in a ``parallel``
branch and whether every one of them is a fallback (``on_error: ignore``: the
callee's failure never fails the caller). Edges and adjacency keep the
graph's own order (callers as the file lists them, callees in order of first
call); everything else is sorted, so the same graph always exports the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fakesvc.graph.model import Call, Graph, Parallel, Span, Step


@dataclass(frozen=True)
class Edge:
    """Every call from ``caller`` to ``callee``, folded into one edge."""

    caller: str
    callee: str
    routes: tuple[str, ...]  # the callee's routes reached, sorted: ("GET /stock/{item_id}",)
    parallel: bool  # at least one of the calls runs in a parallel branch
    fallback: bool  # every one of the calls is a fallback: the callee's failure never fails the caller


def calls_with_parallel(steps: tuple[Step, ...], parallel: bool = False) -> Iterator[tuple[Call, bool]]:
    """The calls of a script in document order, each with whether it runs in a parallel branch."""
    for step in steps:
        if isinstance(step, Call):
            yield step, parallel
        elif isinstance(step, Parallel):
            yield from calls_with_parallel(step.steps, parallel=True)
        elif isinstance(step, Span):
            yield from calls_with_parallel(step.steps, parallel)


def edges(graph: Graph) -> list[Edge]:
    """The graph's caller -> callee edges, once each, in order of first call (callers in file order)."""
    found: dict[tuple[str, str], list[tuple[Call, bool]]] = {}
    for service in graph.services:
        for route in service.routes:
            for call, parallel in calls_with_parallel(route.script):
                found.setdefault((service.name, call.service), []).append((call, parallel))
    return [
        Edge(
            caller=caller,
            callee=callee,
            routes=tuple(sorted({f"{call.method} {call.route}" for call, _ in calls})),
            parallel=any(parallel for _, parallel in calls),
            fallback=all(call.on_error == "ignore" for call, _ in calls),
        )
        for (caller, callee), calls in found.items()
    ]


def as_dict(graph: Graph) -> dict[str, Any]:
    """The JSON document: services, edges, adjacency lists and two 0/1 matrices.

    ``matrix`` is the call direction (row calls column); ``causal_matrix`` its transpose (row causes
    column: a callee's fault shows in its callers), the way PyRCA's HT and random walk read one.
    """
    found = edges(graph)
    names = list(graph.names)
    adjacency: dict[str, list[str]] = {name: [] for name in names}
    for edge in found:
        adjacency[edge.caller].append(edge.callee)
    column = {name: index for index, name in enumerate(names)}
    rows = [[0] * len(names) for _ in names]
    for edge in found:
        rows[column[edge.caller]][column[edge.callee]] = 1
    return {
        "graph": graph.name,
        "services": names,
        "edges": [
            {
                "caller": edge.caller,
                "callee": edge.callee,
                "routes": list(edge.routes),
                "parallel": edge.parallel,
                "fallback": edge.fallback,
            }
            for edge in found
        ],
        "adjacency": adjacency,
        "matrix": {"index": names, "rows": rows},
        "causal_matrix": {"index": names, "rows": [list(column_values) for column_values in zip(*rows)]},
        "edge_service": graph.edge.name,
        "root_cause_candidates": names,  # a fault can be injected into any service of the graph
    }


def to_json(graph: Graph) -> str:
    return json.dumps(as_dict(graph), indent=2) + "\n"


def to_dot(graph: Graph) -> str:
    """A Graphviz digraph: every service a node (the edge service drawn double), every edge labelled with its routes.

    A fallback edge is dashed; a parallel one is bold.
    """
    lines = [f"digraph {_quoted(graph.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    edge_service = graph.edge.name
    for name in graph.names:
        lines.append(f"  {_quoted(name)}{' [peripheries=2]' if name == edge_service else ''};")
    for edge in edges(graph):
        label = _quoted("\n".join(edge.routes))
        styles = [style for style, on in (("dashed", edge.fallback), ("bold", edge.parallel)) if on]
        style = f', style="{",".join(styles)}"' if styles else ""
        lines.append(f"  {_quoted(edge.caller)} -> {_quoted(edge.callee)} [label={label}{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_csv(graph: Graph) -> str:
    """``caller,callee`` with a header, one row per edge."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("caller", "callee"))
    writer.writerows((edge.caller, edge.callee) for edge in edges(graph))
    return out.getvalue()


RENDERERS = {"json": to_json, "dot": to_dot, "csv": to_csv}
FORMATS: tuple[str, ...] = tuple(RENDERERS)  # json first: the default


def render(graph: Graph, fmt: str) -> str:
    """The graph in ``fmt`` (one of :data:`FORMATS`)."""
    return RENDERERS[fmt](graph)


def _quoted(text: str) -> str:
    """A DOT string: quotes and backslashes escaped, a newline as DOT's ``\\n``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
