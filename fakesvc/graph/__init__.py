"""Service graphs: a topology of services, routes and scripts, read from a YAML or JSON file.

:func:`load_graph` reads a built-in graph (:data:`BUILTIN_GRAPHS`: ``checkout``)
or a file and checks it whole: a bad one is a :class:`GraphError` naming every
problem, one path-named line each. ``python -m fakesvc.graph check FILE``
does the same from a shell. The grammar: ``graphs/checkout.yaml`` by example,
``schema.json`` for editors, :mod:`fakesvc.graph.load` as the authority.
"""

from fakesvc.graph.load import BUILTIN_GRAPHS, GraphError, load_graph, parse_graph, read_document
from fakesvc.graph.model import (
    Call,
    FailIf,
    Failure,
    FromCall,
    Graph,
    HangIf,
    KeyFlag,
    Log,
    Parallel,
    Route,
    Service,
    Sleep,
    Span,
    Step,
)

__all__ = [
    "BUILTIN_GRAPHS",
    "Call",
    "FailIf",
    "Failure",
    "FromCall",
    "Graph",
    "GraphError",
    "HangIf",
    "KeyFlag",
    "Log",
    "Parallel",
    "Route",
    "Service",
    "Sleep",
    "Span",
    "Step",
    "load_graph",
    "parse_graph",
    "read_document",
]
