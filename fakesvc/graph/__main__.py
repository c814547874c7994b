"""``python -m fakesvc.graph check FILE|NAME``: validate a graph and print it, or print every problem.

Exit 0 with the graph drawn on stdout (services, ports, routes, call edges);
exit 2 with one line per problem on stderr and nothing on stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from fakesvc.graph.load import BUILTIN_GRAPHS, GraphError, load_graph
from fakesvc.graph.model import Call, Graph, Parallel, Route, Span, Step


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.graph",
        description="Work with fakesvc service graphs (YAML or JSON files, or the built-in ones).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        help="validate a graph and print its services, routes and calls",
        description="Validate a graph and print its services, routes and calls. Exit 0 when it is valid; "
        "otherwise print every problem on stderr, one line each, and exit 2.",
    )
    check.add_argument(
        "graph", metavar="FILE|NAME", help=f"a YAML/JSON file or a built-in graph ({', '.join(BUILTIN_GRAPHS)})"
    )
    return parser


def describe(graph: Graph) -> Iterator[str]:
    """The graph as ``check`` prints it: each service, its routes, and each route's calls as edges."""
    yield f"graph {graph.name} ({graph.source})"
    if graph.parameters:
        yield "parameters: " + ", ".join(f"{name}={value:g}" for name, value in graph.parameters.items())
    for index, service in enumerate(graph.services):
        port = service.port if service.port is not None else f"base+{index}"
        yield f"service {service.name} port {port} code {service.code_prefix}"
        for route in service.routes:
            yield f"  {route.name}{_entry(route)}"
            for call, parallel in _calls(route.script, parallel=False):
                yield f"    {service.name} -> {_edge(call)}{' [parallel]' if parallel else ''}"


def _entry(route: Route) -> str:
    return f" (entry, weight {route.weight:g})" if route.entry else ""


def _edge(call: Call) -> str:
    fallback = " (fallback)" if call.on_error == "ignore" else ""
    return f"{call.service} {call.method} {call.path} timeout {call.timeout_s:g} s{fallback}"


def _calls(steps: tuple[Step, ...], parallel: bool) -> Iterator[tuple[Call, bool]]:
    """The calls in document order, each with whether it runs in a parallel branch."""
    for step in steps:
        if isinstance(step, Call):
            yield step, parallel
        elif isinstance(step, Parallel):
            yield from _calls(step.steps, parallel=True)
        elif isinstance(step, Span):
            yield from _calls(step.steps, parallel)


def _check(source: str) -> int:
    try:
        graph = load_graph(source)
    except GraphError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    for line in describe(graph):
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args.graph)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
