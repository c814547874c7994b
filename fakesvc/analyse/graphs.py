"""What the analyser and the scorer know of the services: a graph's names and call structure, nothing hard-coded.

The graph a truth was made on (its lines' ``graph``, :func:`graph_of_truth`);
for a truth that names none, ``--graph NAME|FILE`` (env FAKESVC_GRAPH, default
the checkout: the services' own setting) picks it; :class:`CallGraph` is what the rule reads of it
(who calls whom, and how each route waits for its calls); :func:`deepest_first`
orders the services by their longest call path from the edge.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fakesvc import settings
from fakesvc.config import SERVICE_SETTINGS
from fakesvc.graph.load import load_graph
from fakesvc.graph.model import Call, Graph, Parallel, Span, Step
from fakesvc.settings import ConfigError
from fakesvc.truth import MadeOn

GRAPH_SETTING = next(setting for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_GRAPH")


def add_graph_flag(parser: argparse.ArgumentParser) -> None:
    """``--graph``, as the services declare it (same env, same default)."""
    settings.add_settings(parser, [GRAPH_SETTING])


def chosen_graph(args: argparse.Namespace | None = None) -> Graph:
    """The graph the flag, else FAKESVC_GRAPH, else the default names; a one-line :class:`ConfigError` if bad."""
    try:
        return load_graph(settings.resolve([GRAPH_SETTING], args)[GRAPH_SETTING.dest])
    except ConfigError as exc:  # a graph file's problems are one line each: a CLI says them on one
        raise ConfigError(f"--graph: {exc}".replace("\n", "; ")) from None


def graph_of_truth(made_on: MadeOn | None, args: argparse.Namespace | None = None) -> Graph:
    """The graph to read a truth with: the one its lines name (``made_on``).

    ``--graph`` (else FAKESVC_GRAPH) chooses only for a truth that names none;
    otherwise it must name the same graph (a file moved since is fine): a
    different one is a :class:`ConfigError` naming both.
    """
    if made_on is None:
        return chosen_graph(args)
    named_by, value = GRAPH_SETTING.flag, getattr(args, GRAPH_SETTING.dest, None)
    if value is None:
        named_by, value = GRAPH_SETTING.env, os.environ.get(GRAPH_SETTING.env)
    if value is not None:
        graph = chosen_graph(args)
        if graph.name != made_on.name:
            raise ConfigError(
                f"{named_by} {value} is graph {graph.name!r}, but the truth was made on graph {made_on}: "
                f"leave {named_by} out to read it with its own"
            )
        return graph
    try:
        graph = load_graph(made_on.file or made_on.name)
    except ConfigError as exc:
        why = str(exc).replace("\n", "; ")
        raise ConfigError(f"the truth was made on graph {made_on}, which cannot be read ({why}); see --graph") from None
    if graph.name != made_on.name:
        raise ConfigError(f"the truth was made on graph {made_on}, but that file now holds graph {graph.name!r}")
    return graph


def default_graph() -> Graph:
    """The graph a caller that names none means: the services' default (the checkout)."""
    return load_graph(GRAPH_SETTING.default)


def _wait_ms(steps: tuple[Step, ...], longest: Mapping[str, float]) -> float:
    """How long a script waits for its calls: steps in a row add up, a ``parallel`` block takes its longest.

    A call waits for its callee's longest span, at most its own timeout (a
    caller that gave up waited no longer); a callee absent from the trace, not at all.
    """
    total = 0.0
    for step in steps:
        if isinstance(step, Call):
            total += min(longest.get(step.service, 0.0), step.timeout_s * 1000)
        elif isinstance(step, Parallel):
            total += max((_wait_ms((inner,), longest) for inner in step.steps), default=0.0)
        elif isinstance(step, Span):
            total += _wait_ms(step.steps, longest)
    return total


@dataclass(frozen=True)
class CallGraph:
    """A graph's call structure, read once: each service's callees and its routes' scripts."""

    callees: Mapping[str, frozenset[str]]
    scripts: Mapping[str, tuple[tuple[Step, ...], ...]]

    @classmethod
    def of(cls, graph: Graph) -> CallGraph:
        return cls(
            callees={service.name: frozenset(graph.callees(service.name)) for service in graph.services},
            scripts={service.name: tuple(route.script for route in service.routes) for service in graph.services},
        )

    def calls(self, caller: str, callee: str) -> bool:
        """Whether ``caller`` calls ``callee`` in the graph (a service the graph does not hold calls no one)."""
        return callee in self.callees.get(caller, ())

    def waited_ms(self, service: str, longest: Mapping[str, float]) -> float:
        """How long ``service``'s longest request waited for its calls, from its callees' longest spans.

        Its route is not in a summary, so the route that waits the longest is taken.
        """
        return max((_wait_ms(script, longest) for script in self.scripts.get(service, ())), default=0.0)


def deepest_first(graph: Graph) -> list[str]:
    """The services by their longest call path from the edge, deepest first (file order among equals)."""
    depth = dict.fromkeys(graph.names, 0)
    for _ in graph.services:  # a DAG's longest paths settle within as many rounds as it has services
        for caller, callee, _path in graph.edges():
            depth[callee] = max(depth[callee], depth[caller] + 1)
    return sorted(graph.names, key=lambda name: -depth[name])  # sorted() is stable: file order among equals
