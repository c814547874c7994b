"""``python -m fakesvc.graph check FILE|NAME``: validate a graph and print it, or print every problem.

Exit 0 with the graph drawn on stdout (services, ports, routes, call edges);
exit 2 with one line per problem on stderr and nothing on stdout, a call
that can never succeed at ``--latency-scale`` (``FAKESVC_LATENCY_SCALE``,
default 1) and a ``--base-port`` (``FAKESVC_BASE_PORT``, default 8100) that
would place a service past port 65535 included.
``python -m fakesvc.graph deploy --graph FILE|NAME --out DIR [--force]`` writes
its Compose file and Kubernetes kustomization (:mod:`fakesvc.graph.deploy`).
``python -m fakesvc.graph export FILE|NAME [--format json|dot|csv] [--out FILE]``
prints its service call graph for root-cause methods (:mod:`fakesvc.graph.export`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from fakesvc.config import SERVICE_SETTINGS, ServiceConfig
from fakesvc.graph import deploy, export
from fakesvc.graph.export import calls_with_parallel
from fakesvc.graph.feasibility import check_timeouts
from fakesvc.graph.load import BUILTIN_GRAPHS, GraphError, load_graph
from fakesvc.graph.model import Call, Graph, Route
from fakesvc.graph.placement import port_of
from fakesvc.settings import ConfigError, add_settings, resolve


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fakesvc.graph",
        description="Work with fakesvc service graphs (YAML or JSON files, or the built-in ones).",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    check = commands.add_parser(
        "check",
        allow_abbrev=False,
        help="validate a graph and print its services, routes and calls",
        description="Validate a graph and print its services, routes and calls. Exit 0 when it is valid; "
        "otherwise print every problem on stderr, one line each, and exit 2.",
    )
    check.add_argument("graph", metavar="FILE|NAME", help=_GRAPH_HELP)
    add_settings(check, _SCALE + _BASE)
    _deploy_arguments(
        commands.add_parser(
            "deploy",
            allow_abbrev=False,
            help="write a graph's compose.yaml and Kubernetes kustomization",
            description="Write DIR/compose.yaml and DIR/deploy/k8s/ for a graph: one container per service, the "
            "embedded sink and a one-shot traffic run against the graph's edge (a graph file is copied to "
            "DIR/graph/ and mounted). Exit 0 when written; 2 for a bad graph (every problem on stderr) or a DIR "
            "that is not empty.",
        )
    )
    _export_arguments(
        commands.add_parser(
            "export",
            allow_abbrev=False,
            help="print a graph's service call graph (JSON, Graphviz DOT or CSV) for root-cause methods",
            description="Print a graph's service call graph: one edge per caller -> callee with the routes it "
            "reaches, the adjacency lists and the 0/1 adjacency matrix (json), a Graphviz digraph (dot) or a "
            "caller,callee edge list (csv). Exit 0 when written; 2 for a bad graph (every problem on stderr).",
        )
    )
    return parser


_GRAPH_HELP = f"a YAML/JSON file or a built-in graph ({', '.join(BUILTIN_GRAPHS)})"
_SCALE = [setting for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_LATENCY_SCALE"]
_BASE = [setting for setting in SERVICE_SETTINGS if setting.env == "FAKESVC_BASE_PORT"]


def _deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--graph", metavar="FILE|NAME", required=True, help=_GRAPH_HELP)
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help="where to write (created if missing)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into DIR even when it is not empty (the files written are replaced, others are left alone)",
    )


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("graph", metavar="FILE|NAME", help=_GRAPH_HELP)
    parser.add_argument(
        "--format",
        choices=export.FORMATS,
        default=export.FORMATS[0],
        help=f"what to print (one of {', '.join(export.FORMATS)}; default {export.FORMATS[0]})",
    )
    parser.add_argument("--out", metavar="FILE", type=Path, help="write there (replaced if it exists), not to stdout")


def describe(graph: Graph, base_port: int = _BASE[0].default, base_set: bool = False) -> Iterator[str]:
    """The graph as ``check`` prints it: each service, its routes, and each route's calls as edges.

    A service without a port of its own says where its port comes from:
    ``port 8101 (FAKESVC_BASE_PORT default 8100 + 1)``.
    """
    yield f"graph {graph.name} ({graph.source})"
    if graph.parameters:
        yield "parameters: " + ", ".join(f"{name}={value:g}" for name, value in graph.parameters.items())
    base = f"FAKESVC_BASE_PORT {'' if base_set else 'default '}{base_port}"
    for index, service in enumerate(graph.services):
        if service.port is not None:
            port = str(service.port)
        elif base_port:
            port = f"{base_port + index} ({base} + {index})"
        else:
            port = f"free ({base}: any free port)"
        yield f"service {service.name} port {port} code {service.code_prefix}"
        for route in service.routes:
            yield f"  {route.name}{_entry(route)}"
            for call, parallel in calls_with_parallel(route.script):
                yield f"    {service.name} -> {_edge(call)}{' [parallel]' if parallel else ''}"


def _entry(route: Route) -> str:
    return f" (entry, weight {route.weight:g})" if route.entry else ""


def _edge(call: Call) -> str:
    fallback = " (fallback)" if call.on_error == "ignore" else ""
    return f"{call.service} {call.method} {call.path} timeout {call.timeout_s:g} s{fallback}"


def _problems(problems: list[str]) -> int:
    for problem in problems:
        print(problem, file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    """The file as written (its own parameters), at the latency scale of the flag or the environment."""
    try:
        scale = resolve(_SCALE, args)["latency_scale"]
        base_port = resolve(_BASE, args)["base_port"]
        graph = load_graph(args.graph)
        check_timeouts(graph, scale, graph.names)
        placed = ServiceConfig(base_port=base_port)
        for name in graph.names:
            port_of(graph, name, placed)  # a base port the graph overflows, as supervisor.py would say
    except GraphError as exc:
        return _problems(exc.problems)
    except ConfigError as exc:
        return _problems([str(exc)])
    base_set = args.base_port is not None or _BASE[0].env in os.environ
    for line in describe(graph, base_port, base_set):
        print(line)
    return 0


def _deploy(source: str, out: Path, force: bool) -> int:
    """Check the graph and DIR before writing anything: a refused run leaves DIR as it was."""
    try:
        files = deploy.render(source)
        if deploy.occupied(out) and not force:
            return _problems([f"{out}: not empty (use --force to write into it)"])
        written = deploy.write(files, out)
    except (GraphError, deploy.DeployError) as exc:
        return _problems(exc.problems)
    except OSError as exc:
        return _problems([f"{exc.filename or out}: cannot write: {exc.strerror or exc}"])
    for path in written:
        print(path)
    return 0


def _export(source: str, fmt: str, out: Path | None) -> int:
    """The whole text is made before anything is written: a bad graph leaves FILE as it was."""
    try:
        text = export.render(load_graph(source), fmt)
    except GraphError as exc:
        return _problems(exc.problems)
    if out is None:
        sys.stdout.write(text)
        return 0
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        return _problems([f"{exc.filename or out}: cannot write: {exc.strerror or exc}"])
    print(f"wrote {out}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check":
        return _check(args)
    if args.command == "deploy":
        return _deploy(args.graph, args.out, args.force)
    if args.command == "export":
        return _export(args.graph, args.format, args.out)
    parser.print_help(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
